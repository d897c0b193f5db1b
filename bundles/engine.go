package bundles

import (
	"context"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Engine serves decisions from one active revision of a bundle. Swapping in
// a new revision is atomic: a decision runs wholly on the revision that was
// active when it started. It is safe for concurrent use by many loops.
type Engine struct {
	active atomic.Pointer[Revision]
}

// NewEngine starts an engine on a revision.
func NewEngine(rev *Revision) *Engine {
	e := &Engine{}
	e.active.Store(rev)
	return e
}

// Active is the revision decisions currently run on.
func (e *Engine) Active() *Revision { return e.active.Load() }

// Activate makes rev the active revision once every given decision path is
// prepared on it. If any fails to prepare, the old revision stays active.
func (e *Engine) Activate(ctx context.Context, rev *Revision, decisions ...string) error {
	for _, d := range decisions {
		if _, err := rev.Prepare(ctx, d); err != nil {
			return err
		}
	}
	e.active.Store(rev)
	return nil
}

// Decide evaluates a decision on the active revision.
func (e *Engine) Decide(ctx context.Context, req Request) (*Result, error) {
	return e.active.Load().Decide(ctx, req)
}

// Request is one decision to make.
type Request struct {
	// Decision is the rule's path, e.g. "governor/reactive/decision".
	Decision string
	// Input is the input document, as decoded from JSON (numbers as
	// json.Number or float64).
	Input map[string]any
	// Contract overrides the contract derived from Input (its targets and
	// loop kind) when set.
	Contract *Contract
	// Tracer, when set, receives the evaluation trace (governor eval --explain).
	Tracer topdown.QueryTracer
}

// Result is a decision that passed the contract.
type Result struct {
	// Revision is "name@revision" of the revision that decided.
	Revision string
	Decision Decision
	// Raw is the policy's output as it returned it.
	Raw map[string]any
}

// Decide evaluates a decision on this revision and checks it against the
// contract. A decision that breaks the contract is an *InvalidDecisionError
// and must not be acted on in any part.
func (r *Revision) Decide(ctx context.Context, req Request) (*Result, error) {
	if req.Input == nil {
		return nil, &InputError{Source: "input", Reason: "input must be a JSON object"}
	}
	pq, err := r.Prepare(ctx, req.Decision)
	if err != nil {
		return nil, err
	}
	// Inputs are decoded JSON already: convert them straight to Rego values,
	// skipping the defensive deep copy rego.EvalInput makes of arbitrary Go
	// values (a third of the cost of a decision on a large input).
	input, err := ast.InterfaceToValue(req.Input)
	if err != nil {
		return nil, &InputError{Source: "input", Reason: err.Error()}
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(input)}
	if req.Tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(req.Tracer))
	}
	rs, err := pq.Eval(ctx, opts...)
	if err != nil {
		return nil, &EvalError{Decision: req.Decision, Revision: r.String(), Err: err}
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, &UndefinedDecisionError{Decision: req.Decision, Revision: r.String(), Reason: "the policy returned no value for this input"}
	}
	raw := rs[0].Expressions[0].Value
	contract := ContractFromInput(req.Input)
	if req.Contract != nil {
		contract = *req.Contract
	}
	d, problems := ValidateDecision(raw, contract)
	if len(problems) > 0 {
		return nil, &InvalidDecisionError{Decision: req.Decision, Revision: r.String(), Problems: problems}
	}
	obj, _ := raw.(map[string]any) // ValidateDecision has checked it is an object
	return &Result{Revision: r.String(), Decision: d, Raw: obj}, nil
}
