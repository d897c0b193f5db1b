package actuators_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// stub is an actuator whose Apply answers as told and records its calls.
type stub struct {
	field   string
	changed bool
	err     error
	calls   *[]string
}

func (s stub) Field() string                                                       { return s.field }
func (s stub) Parse(_ *decision.Parser, _ string, raw any) any                     { return raw }
func (s stub) Read(context.Context, client.Reader, *actuators.Target) (any, error) { return nil, nil }
func (s stub) Doc(any) any                                                         { return nil }
func (s stub) Fit(_ *actuators.Fit, _ *actuators.Target, want any) any             { return want }
func (s stub) Simulate(_ *v1alpha1.TargetSpec, _, value any) any                   { return value }
func (s stub) Apply(context.Context, client.Client, *actuators.Target, any) (bool, error) {
	*s.calls = append(*s.calls, s.field)
	return s.changed, s.err
}

// A set is applied in the registry's order; a failure stops what follows,
// and the result says what was applied: the fields before it, and the
// failing one when it changed something before it failed.
func TestRegistryApplyReportsWhatWasApplied(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name    string
		b       stub
		want    decision.Set
		wantErr string
	}{
		{"all applied", stub{field: "b", changed: true}, decision.Set{"a": 1, "b": 2, "c": 3}, ""},
		{"already so counts as applied", stub{field: "b"}, decision.Set{"a": 1, "b": 2, "c": 3}, ""},
		{"failing before any change", stub{field: "b", err: boom}, decision.Set{"a": 1}, "b: boom"},
		{"failing after a change", stub{field: "b", changed: true, err: boom}, decision.Set{"a": 1, "b": 2}, "b: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			tc.b.calls = &calls
			reg := actuators.NewRegistry(stub{field: "a", changed: true, calls: &calls}, tc.b, stub{field: "c", changed: true, calls: &calls})
			applied, err := reg.Apply(context.Background(), nil, &actuators.Target{}, decision.Set{"c": 3, "b": 2, "a": 1})
			assert.Equal(t, tc.want, applied)
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, []string{"a", "b", "c"}, calls)
			} else {
				assert.EqualError(t, err, tc.wantErr)
				assert.Equal(t, []string{"a", "b"}, calls, "nothing after the failure")
			}
		})
	}
	assert.Equal(t, []string{"a", "c"}, actuators.NewRegistry(stub{field: "a"}, stub{field: "c"}).FieldNames())
	assert.Panics(t, func() { actuators.NewRegistry(stub{field: "a"}, stub{field: "a"}) })
}
