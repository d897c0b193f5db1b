package bundles

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// LoadError is a bundle that could not be read: missing, not a bundle,
// a parse error, roots that do not hold its files.
type LoadError struct {
	Source string
	Err    error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("cannot load bundle %s: %v", e.Source, e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// CompileError is a bundle whose Rego does not compile; each problem names
// its file and line.
type CompileError struct {
	Bundle   string
	Problems []CompileProblem
}

// CompileProblem is one compiler error at one place.
type CompileProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p CompileProblem) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Code, p.Message)
}

func (e *CompileError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	noun := "error"
	if len(parts) > 1 {
		noun = "errors"
	}
	return fmt.Sprintf("bundle %s does not compile (%d %s): %s", e.Bundle, len(parts), noun, strings.Join(parts, "; "))
}

func newCompileError(name, source string, errs ast.Errors) *CompileError {
	ce := &CompileError{Bundle: name}
	for _, e := range errs {
		p := CompileProblem{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			p.File = sourceFile(source, e.Location.File)
			p.Line = e.Location.Row
			p.Column = e.Location.Col
		}
		ce.Problems = append(ce.Problems, p)
	}
	return ce
}

// sourceFile makes a module's name inside a bundle ("/reactive.rego") a
// path the author can open ("policies/reactive/reactive.rego").
func sourceFile(source, file string) string {
	if file == "" || strings.HasPrefix(file, source) || strings.HasSuffix(source, ".gz") {
		return file
	}
	return filepath.Join(source, file)
}

// UndefinedDecisionError is a decision path the bundle does not define, or
// that is not a valid path at all.
type UndefinedDecisionError struct {
	Decision string
	Revision string
	Reason   string
}

func (e *UndefinedDecisionError) Error() string {
	if e.Revision == "" {
		return fmt.Sprintf("decision %s: %s", e.Decision, e.Reason)
	}
	return fmt.Sprintf("decision %s is undefined in %s: %s", e.Decision, e.Revision, e.Reason)
}

// EvalError is a policy that failed while evaluating (a conflict between
// rules, a builtin error in strict mode, a cancelled context).
type EvalError struct {
	Decision string
	Revision string
	Err      error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("evaluating %s in %s: %v", e.Decision, e.Revision, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// TimeoutError is a decision that did not finish within its time limit
// (a loop's spec.policy.timeout): its evaluation was stopped. It is the
// policy's failure, not the controller's stopping.
type TimeoutError struct {
	Decision string
	Revision string
	Timeout  time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("evaluating %s in %s: stopped after its time limit of %s", e.Decision, e.Revision, e.Timeout)
}

// InputError is an input document that is not usable: not JSON, not an object.
type InputError struct {
	Source string
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("bad input %s: %s", e.Source, e.Reason)
}

// VerificationError is a bundle whose signature does not verify with the
// configured keys: unsigned, a bad signature, a file changed or added after
// signing, a signature by a key that is not configured. Nothing of it may be
// activated.
type VerificationError struct {
	Bundle string // the bundle's name
	Source string // where it came from
	Reason string // OPA's reason, e.g. "bundle missing .signatures.json file"
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("bundle %s (%s) failed signature verification: %s", e.Bundle, e.Source, e.Reason)
}
