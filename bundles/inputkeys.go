package bundles

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputReads is the part of the input a decision can read: the top-level
// keys its rules and the rules they depend on name (input.metrics,
// input["targets"], import input.params), or every key when one of them
// uses the input whole or by a computed key (input[k], object.get(input,
// ...), with input as ...).
type inputReads struct {
	all  bool
	keys map[string]bool
}

// readsOf scans the rules of a decision and every rule they depend on, as
// the compiler's dependency graph has them, for references to the input.
// Rules outside the decision's reach (a bundle's tests) do not count.
func readsOf(graph *ast.Graph, decision []*ast.Rule) inputReads {
	reads := inputReads{keys: map[string]bool{}}
	var visit func(x any) bool
	visit = func(x any) bool {
		switch t := x.(type) {
		case ast.Var:
			if t.Equal(ast.InputRootDocument.Value) {
				reads.all = true
			}
		case ast.Ref:
			if !t[0].Equal(ast.InputRootDocument) {
				return false
			}
			if key, ok := refKey(t); ok {
				reads.keys[key] = true
			} else {
				reads.all = true
			}
			// The head is accounted for; its operands may hold other refs.
			for _, term := range t[1:] {
				ast.NewGenericVisitor(visit).Walk(term)
			}
			return true
		}
		return reads.all
	}
	seen := map[*ast.Rule]bool{}
	var stack []*ast.Rule
	push := func(r *ast.Rule) {
		for ; r != nil; r = r.Else {
			if !seen[r] {
				seen[r] = true
				stack = append(stack, r)
			}
		}
	}
	for _, r := range decision {
		push(r)
	}
	for len(stack) > 0 && !reads.all {
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ast.NewGenericVisitor(visit).Walk(r)
		for dep := range graph.Dependencies(r) {
			push(dep.(*ast.Rule))
		}
	}
	return reads
}

// Reads says whether a decision may read input.<key>: whether the input it
// is evaluated on must hold the key. An undefined decision reads nothing.
func (r *Revision) Reads(ctx context.Context, decision, key string) bool {
	pq, err := r.prepare(ctx, decision)
	return err == nil && (pq.reads.all || pq.reads.keys[key])
}

// refKey is the constant top-level key of an input reference.
func refKey(ref ast.Ref) (string, bool) {
	if len(ref) < 2 {
		return "", false
	}
	s, ok := ref[1].Value.(ast.String)
	return string(s), ok
}

// of is the part of input the decision reads: input itself when it may
// read all of it, else a new map of the keys it names. Evaluating on it
// decides as on the whole input, without converting what no rule reads
// (input.history, say) into Rego values at every decision.
func (r inputReads) of(input map[string]any) map[string]any {
	if r.all || len(r.keys) >= len(input) {
		return input
	}
	out := make(map[string]any, len(r.keys))
	for k := range r.keys {
		if v, ok := input[k]; ok {
			out[k] = v
		}
	}
	return out
}
