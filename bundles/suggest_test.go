package bundles

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUndefinedDecisionSaysWhatWasMeant(t *testing.T) {
	rev, err := Load(context.Background(), "../policies/reactive")
	require.NoError(t, err)
	for path, want := range map[string]string{
		"governor/reactive/decisoin": "no rule defines it: did you mean governor/reactive/decision?",
		"governor/reactiv/decision":  "no rule defines it: did you mean governor/reactive/decision?",
		"governor/reactive":          "it is a package, not a rule: did you mean governor/reactive/decision?",
		"somewhere/far/away":         "is undefined in reactive@",
		"":                           `decision "": no decision path given (want a path like governor/reactive/decision)`,
	} {
		_, err := rev.Prepare(context.Background(), path)
		require.Error(t, err, path)
		assert.Contains(t, err.Error(), want, path)
	}
}
