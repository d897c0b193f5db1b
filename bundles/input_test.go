package bundles

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadInput(t *testing.T) {
	in, err := ReadInput(strings.NewReader(`{"tick": 12, "params": {"alpha": 0.7}}`), "x.json")
	require.NoError(t, err)
	assert.Equal(t, json.Number("12"), in["tick"])

	for body, want := range map[string]string{
		"":                    "bad input x.json: empty",
		"   \n":               "empty",
		`{"tick": 1,`:         "not valid JSON",
		"{\n  \"a\": 1,\n  }": "line 3, column 3",
		`[1]`:                 "must be a JSON object, got array of 1",
		`"hi"`:                `got string "hi"`,
		`{"a": 1} {"b": 2}`:   "more than one JSON value",
	} {
		_, err := ReadInput(strings.NewReader(body), "x.json")
		var ie *InputError
		require.ErrorAs(t, err, &ie, "input %q", body)
		assert.Contains(t, err.Error(), want, "input %q", body)
	}
}
