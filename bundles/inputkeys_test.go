package bundles

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A decision is evaluated on the input keys the modules name, and on the
// whole input when a module may read any key: either way it decides as on
// the whole input.
func TestDecisionsSeeEveryInputKeyTheyRead(t *testing.T) {
	input := map[string]any{"a": "A", "secret": "S", "history": []any{"H"}}
	for _, c := range []struct {
		name    string
		modules map[string]string
		keys    []string // nil: the whole input
		want    string
	}{
		{"named key", map[string]string{"p.rego": `package t
decision := {"events": [input.a]}`}, []string{"a"}, "A"},
		{"quoted key", map[string]string{"p.rego": `package t
decision := {"events": [input["secret"]]}`}, []string{"secret"}, "S"},
		{"import", map[string]string{"p.rego": `package t
import input.secret as s
decision := {"events": [s]}`}, []string{"secret"}, "S"},
		{"another module", map[string]string{"p.rego": `package t
decision := {"events": [data.q.s]}`, "q.rego": `package q
s := input.secret`}, []string{"secret"}, "S"},
		{"key in an operand", map[string]string{"p.rego": `package t
decision := {"events": [data.m[input.a]]}`, "q.rego": `package m
A := input.secret`}, []string{"a", "secret"}, "S"},
		{"computed key", map[string]string{"p.rego": `package t
k := "secret"
decision := {"events": [input[k]]}`}, nil, "S"},
		{"whole input to a builtin", map[string]string{"p.rego": `package t
decision := {"events": [object.get(input, "secret", "none")]}`}, nil, "S"},
		{"whole input to a function", map[string]string{"p.rego": `package t
f(x) := x.secret
decision := {"events": [f(input)]}`}, nil, "S"},
		{"iteration over keys", map[string]string{"p.rego": `package t
decision := {"events": [k | some k, _ in input; k == "secret"]}`}, nil, "secret"},
		{"with", map[string]string{"p.rego": `package t
s := input.secret
decision := {"events": [x]} if x := s with input as {"secret": "W"}`}, nil, "W"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rev, err := Load(context.Background(), writeBundle(t, c.modules))
			require.NoError(t, err)
			pq, err := rev.prepare(context.Background(), "t/decision")
			require.NoError(t, err)
			if c.keys == nil {
				assert.True(t, pq.reads.all, "must read the whole input")
			} else {
				assert.False(t, pq.reads.all, "reads only named keys")
				assert.Equal(t, c.keys, slices.Sorted(maps.Keys(pq.reads.keys)))
			}
			res, err := rev.Decide(context.Background(), Request{Decision: "t/decision", Input: input})
			require.NoError(t, err)
			assert.Equal(t, []string{c.want}, res.Decision.Events)
		})
	}
}

// The shipped policies never read input.history (their
// tests, which replace the whole input, are out of the decision's reach), so a
// loop's history is not converted at each decision.
func TestShippedPoliciesReadNoHistory(t *testing.T) {
	for _, policy := range []string{"reactive", "bandwidth", "deliberative"} {
		rev, err := Load(context.Background(), "../policies/"+policy)
		require.NoError(t, err)
		pq, err := rev.prepare(context.Background(), "governor/"+policy+"/decision")
		require.NoError(t, err)
		assert.False(t, pq.reads.all, policy)
		assert.NotContains(t, pq.reads.keys, "history", policy)
		assert.Contains(t, pq.reads.keys, "params", policy)
	}
}

// Request.Values stand for their keys of the input, converted already: the
// decision sees them (here, as they differ from Input's), they are not
// converted again, and a key the decision does not read stays out, as does
// a value for a key the input lacks.
func TestDecideOnValuesConvertedBefore(t *testing.T) {
	for _, c := range []struct {
		name, policy string
		want         []string
	}{
		{"named keys", `package t
decision := {"events": [sprintf("%v %v", [input.a, input.targets.x.bw])]}`, []string{"A 2"}},
		{"whole input", `package t
decision := {"events": [sprintf("%v %v", [object.get(input, "a", "-"), object.keys(input)])]}`, []string{`A {"a", "targets"}`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rev, err := Load(context.Background(), writeBundle(t, map[string]string{"p.rego": c.policy}))
			require.NoError(t, err)
			input := map[string]any{"a": "A", "targets": map[string]any{"x": map[string]any{"bw": 1}}}
			converted, err := ast.InterfaceToValue(map[string]any{"x": map[string]any{"bw": 2}})
			require.NoError(t, err)
			res, err := rev.Decide(context.Background(), Request{Decision: "t/decision", Input: input,
				Values: map[string]ast.Value{"targets": converted, "absent": ast.String("no")}})
			require.NoError(t, err)
			assert.Equal(t, c.want, res.Decision.Events)
			assert.Equal(t, map[string]any{"x": map[string]any{"bw": 1}}, input["targets"], "the input itself is left as it is")
		})
	}
}
