package bundles

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/decision"
)

// Retained is how many revisions an Engine keeps, newest first, for loops
// that pin a revision other than the active one.
const Retained = 8

// Engine serves decisions from one active revision of a bundle. Swapping in
// a new revision is atomic: a decision runs wholly on the revision that was
// active when it started. It is safe for concurrent use by many loops.
type Engine struct {
	name   string
	active atomic.Pointer[Revision]

	mu sync.Mutex
	// retained are the last revisions activated, newest first.
	retained []*Revision
}

// NewEngine starts an engine on a revision.
func NewEngine(rev *Revision) *Engine {
	e := &Engine{name: rev.Name(), retained: []*Revision{rev}}
	e.active.Store(rev)
	return e
}

// NewEmptyEngine is the engine of a bundle that has no revision yet (one
// that is still to be downloaded): it decides nothing until one is activated.
func NewEmptyEngine(name string) *Engine {
	return &Engine{name: name}
}

// Active is the revision decisions currently run on; nil before the first.
func (e *Engine) Active() *Revision { return e.active.Load() }

// Activate makes rev the active revision once every given decision path is
// prepared on it. If any fails to prepare, the old revision stays active.
func (e *Engine) Activate(ctx context.Context, rev *Revision, decisions ...string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range decisions {
		if _, err := rev.Prepare(ctx, d); err != nil {
			return err
		}
	}
	e.active.Store(rev)
	e.retained = slices.DeleteFunc(e.retained, func(r *Revision) bool { return r.Revision() == rev.Revision() })
	e.retained = append([]*Revision{rev}, e.retained...)
	if len(e.retained) > Retained {
		e.retained = e.retained[:Retained]
	}
	return nil
}

// Revisions are the retained revisions' manifest revisions, newest first.
func (e *Engine) Revisions() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.retained))
	for i, r := range e.retained {
		out[i] = r.Revision()
	}
	return out
}

// Revision is the revision a request runs on: the active one, or for a
// pinned request the retained revision it names.
func (e *Engine) Revision(pin string) (*Revision, error) {
	active := e.active.Load()
	if pin == "" || (active != nil && active.Revision() == pin) {
		if active == nil {
			return nil, &NoRevisionError{Bundle: e.name}
		}
		return active, nil
	}
	e.mu.Lock()
	for _, r := range e.retained {
		if r.Revision() == pin {
			e.mu.Unlock()
			return r, nil
		}
	}
	e.mu.Unlock()
	return nil, &NoRevisionError{Bundle: e.name, Pin: pin, Retained: e.Revisions()}
}

// Decide evaluates a decision on the active revision, or on the revision
// the request pins.
func (e *Engine) Decide(ctx context.Context, req Request) (*Result, error) {
	rev, err := e.Revision(req.Revision)
	if err != nil {
		return nil, err
	}
	return rev.Decide(ctx, req)
}

// NoRevisionError is a bundle with no revision to decide on: none activated
// yet, or not the one a loop pins.
type NoRevisionError struct {
	Bundle   string
	Pin      string   // the pinned revision, if any
	Retained []string // the revisions the engine holds, newest first
}

func (e *NoRevisionError) Error() string {
	if e.Pin == "" {
		return fmt.Sprintf("bundle %s has no active revision yet", e.Bundle)
	}
	held := "none"
	if len(e.Retained) > 0 {
		held = strings.Join(e.Retained, ", ")
	}
	return fmt.Sprintf("bundle %s has no revision %q (it holds: %s)", e.Bundle, e.Pin, held)
}

// Request is one decision to make.
type Request struct {
	// Decision is the rule's path, e.g. "governor/reactive/decision".
	Decision string
	// Input is the input document, as decoded from JSON (numbers as
	// json.Number or float64).
	Input map[string]any
	// Values are some of Input's top-level keys already converted to Rego
	// values, as ast.InterfaceToValue converts them: a caller that keeps
	// documents converted from an earlier decision (a loop's unchanged
	// targets) passes them, and Decide converts only the other keys.
	Values map[string]ast.Value
	// Revision pins the manifest revision to decide on; "" is the active one.
	Revision string
	// Contract overrides the contract derived from Input (its targets and
	// loop kind, and Governor's actuators) when set.
	Contract *decision.Contract
	// Tracer, when set, receives the evaluation trace (governor eval --explain).
	Tracer topdown.QueryTracer
	// Timeout bounds the evaluation: past it, the decision is a
	// *TimeoutError. Zero is no limit.
	Timeout time.Duration
}

// Result is a decision that passed the contract.
type Result struct {
	// Revision is "name@revision" of the revision that decided, From the
	// revision itself.
	Revision string
	From     *Revision
	Decision decision.Decision
	// Raw is the policy's output as it returned it.
	Raw map[string]any
}

// Decide evaluates a decision on this revision and checks it against the
// contract. A decision that breaks the contract is a *decision.InvalidDecisionError
// and must not be acted on in any part.
func (r *Revision) Decide(ctx context.Context, req Request) (*Result, error) {
	if req.Input == nil {
		return nil, &InputError{Source: "input", Reason: "input must be a JSON object"}
	}
	pq, err := r.prepare(ctx, req.Decision)
	if err != nil {
		return nil, err
	}
	// Inputs are decoded JSON already: convert them straight to Rego values,
	// skipping the defensive deep copy rego.EvalInput makes of arbitrary Go
	// values (a third of the cost of a decision on a large input), and only
	// the keys the decision reads (the rest is converted for nothing).
	input, err := ast.InterfaceToValue(withValues(pq.reads.of(req.Input), req.Values))
	if err != nil {
		return nil, &InputError{Source: "input", Reason: err.Error()}
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(input)}
	if req.Tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(req.Tracer))
	}
	evalCtx := ctx
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		evalCtx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	rs, err := pq.query.Eval(evalCtx, opts...)
	if err != nil {
		if ctx.Err() == nil && evalCtx.Err() != nil {
			return nil, &TimeoutError{Decision: req.Decision, Revision: r.String(), Timeout: req.Timeout}
		}
		return nil, &EvalError{Decision: req.Decision, Revision: r.String(), Err: err}
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, &UndefinedDecisionError{Decision: req.Decision, Revision: r.String(), Reason: "the policy returned no value for this input"}
	}
	raw := rs[0].Expressions[0].Value
	contract := decision.ContractFromInput(req.Input, builtin.Actuators)
	if req.Contract != nil {
		contract = *req.Contract
	}
	d, problems := decision.Validate(raw, contract)
	if len(problems) > 0 {
		return nil, &decision.InvalidDecisionError{Decision: req.Decision, Revision: r.String(), Problems: problems}
	}
	obj, _ := raw.(map[string]any) // Validate has checked it is an object
	return &Result{Revision: r.String(), From: r, Decision: d, Raw: obj}, nil
}

// withValues is input with the keys of values as those Rego values (which
// ast.InterfaceToValue takes as they are), input itself when there are none.
func withValues(input map[string]any, values map[string]ast.Value) map[string]any {
	if len(values) == 0 {
		return input
	}
	out := maps.Clone(input)
	for k, v := range values {
		if _, ok := out[k]; ok {
			out[k] = v
		}
	}
	return out
}
