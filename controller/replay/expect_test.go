package replay

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/api/v1alpha1"
)

func scalingRows(t *testing.T) []Row {
	t.Helper()
	loop, err := ReadLoop(filepath.Join(traces, "factory-scaling/scaling.yaml"))
	require.NoError(t, err)
	rows, err := Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{loop}, readTrace(t, filepath.Join(traces, "factory-scaling/trace.jsonl")))
	require.NoError(t, err)
	return rows
}

func expectations(t *testing.T, lines string) []Expectation {
	t.Helper()
	e, err := ReadExpectations(strings.NewReader(lines), "expect.jsonl")
	require.NoError(t, err)
	return e
}

func TestExpectationsThatHold(t *testing.T) {
	rows := scalingRows(t)
	e := expectations(t, `# the first two ticks scale web out by one each
{"tick": 1, "targets": {"web": {"replicas": 3}}, "events": ["High memory", "High cpu"], "actions": [{"target": "web", "set": {"replicas": 3}}]}
{"time": "2026-11-21T10:00:01Z", "targets": {"web": {"replicas": 4}}}
`)
	assert.Empty(t, Failures(rows, e))
}

func TestExpectationsThatDoNotHoldNameTheTick(t *testing.T) {
	rows := scalingRows(t)
	e := expectations(t, `{"tick": 2, "no_action": true, "events": [], "targets": {"web": {"replicas": 9}}}
{"tick": 999}
`)
	assert.Equal(t, []string{
		`loop factory-scaling tick 2 (2026-11-21T10:00:01Z): web.replicas is 4, expected 9 (expected at expect.jsonl:1)`,
		`loop factory-scaling tick 2 (2026-11-21T10:00:01Z): events are [High cpu, High memory], expected [] (expected at expect.jsonl:1)`,
		`loop factory-scaling tick 2 (2026-11-21T10:00:01Z): applied web {"replicas":4}, expected no action (expected at expect.jsonl:1)`,
		`expect.jsonl:2: no such tick in the replay`,
	}, Failures(rows, e))
}

func TestBadExpectations(t *testing.T) {
	for line, want := range map[string]string{
		`{"targets": {}}`: "expect.jsonl:1: give exactly one of tick and time",
		`{"tick": 1, "time": "2026-11-21T10:00:00Z"}`:           "expect.jsonl:1: give exactly one of tick and time",
		`{"tick": 1, "evnts": []}`:                              "expect.jsonl:1: json: unknown field \"evnts\"",
		"# comments and blank lines count\n\n{\"tick\": 1}\n{}": "expect.jsonl:4: give exactly one of tick and time",
	} {
		_, err := ReadExpectations(strings.NewReader(line), "expect.jsonl")
		assert.EqualError(t, err, want, line)
	}
}

func TestFailedTicksAreFailures(t *testing.T) {
	loop, err := ReadLoop(filepath.Join(traces, "factory-scaling/scaling.yaml"))
	require.NoError(t, err)
	loop.Spec.Policy.Decision = "governor/reactive/nope"
	rows, err := Run(context.Background(), registry(t), []*v1alpha1.ControlLoop{loop}, readTrace(t, filepath.Join(traces, "factory-scaling/trace.jsonl")))
	require.NoError(t, err)
	failures := Failures(rows, nil)
	require.Len(t, failures, len(rows))
	assert.Contains(t, failures[0], "loop factory-scaling tick 1 (2026-11-21T10:00:00Z): ")
}

func TestHistoryCarriesInputAndState(t *testing.T) {
	rows := scalingRows(t)
	input, err := InputOf(rows, "", 2)
	require.NoError(t, err)
	assert.Equal(t, int64(2), input["tick"], "tick 2's own input")
	h := History(rows)[1].(map[string]any)
	assert.Equal(t, input, h["input"])
	_, err = InputOf(rows, "", 999)
	assert.EqualError(t, err, "no tick 999 in the replay (60 rows)")
}

func TestLoopsAreValidatedAsTheAPIServerWould(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(traces, "factory-scaling/scaling.yaml"))
	require.NoError(t, err)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "replicas: {min: 1, max: 10}", "replicas: {min: 8, max: 5}", 1)), 0o600))
	_, err = ReadLoop(bad)
	assert.EqualError(t, err, bad+`: ControlLoop.governor.dev "factory-scaling" is invalid: spec.targets[0].replicas: Invalid value: min must not be above max`)

	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), "interval: 1s", "interval: 1ms", 1)), 0o600))
	_, err = ReadLoop(bad)
	assert.ErrorContains(t, err, `spec.interval: Invalid value: "1ms": interval must be at least 100ms`)
}
