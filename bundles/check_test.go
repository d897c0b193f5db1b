package bundles

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckBundleRunsTheGate(t *testing.T) {
	ctx := context.Background()
	rev, err := CheckBundle(ctx, "../policies/reactive", []string{"governor/reactive/decision"}, Limits{})
	require.NoError(t, err)
	assert.Equal(t, "reactive", rev.Name())

	for _, tc := range []struct {
		files     map[string]string
		decisions []string
		step      GateStep
	}{
		{map[string]string{"p.rego": "package p\n\nd := 1\n", "p_test.rego": "package p_test\n\ntest_no if data.p.d == 2\n"}, nil, StepTest},
		{map[string]string{"p.rego": "package p\n\nd := 1\n"}, []string{"p/decision"}, StepPrepare},
		{map[string]string{"p.rego": "package p\n\nd := http.send({})\n"}, nil, StepCompile},
		{map[string]string{"p.rego": "package p\n\nd := \n"}, nil, StepRead},
	} {
		_, err := CheckBundle(ctx, writeBundle(t, tc.files), tc.decisions, Limits{})
		var ge *GateError
		require.True(t, errors.As(err, &ge), "%v", err)
		assert.Equal(t, tc.step, ge.Step, "%v", err)
	}
}
