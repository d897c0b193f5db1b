//go:build integration

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	scalingLoop  = "test/traces/factory-scaling/scaling.yaml"
	scalingTrace = "test/traces/factory-scaling/trace.jsonl"
)

// replayIn runs governor replay in dir (a fresh one when empty), so that
// files written unasked would show there.
func replayIn(t *testing.T, dir string, args ...string) result {
	t.Helper()
	abs := make([]string, len(args))
	for i, a := range args {
		abs[i] = a
		if strings.HasPrefix(a, "test/") || strings.HasPrefix(a, "policies") {
			abs[i] = filepath.Join(repoRoot, a)
		}
	}
	return runIn(t, dir, governor, append([]string{"replay", "--bundles", filepath.Join(repoRoot, "policies")}, abs...)...)
}

func TestReplayIsATest(t *testing.T) {
	dir := t.TempDir()
	expect := filepath.Join(dir, "expect.jsonl")
	require.NoError(t, os.WriteFile(expect, []byte(`{"tick": 1, "targets": {"web": {"replicas": 3}}, "events": ["High cpu", "High memory"], "actions": [{"target": "web", "set": {"replicas": 3}}]}
{"time": "2026-11-21T10:00:01Z", "targets": {"web": {"replicas": 4}}}
`), 0o644))
	res := replayIn(t, dir, "--loop", scalingLoop, "--trace", scalingTrace, "--expect", expect)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stderr, "60 ticks of 1 loop(s), 2 expectation(s)")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no plot or history written unasked")

	require.NoError(t, os.WriteFile(expect, []byte(`{"tick": 2, "no_action": true}`+"\n"), 0o644))
	res = replayIn(t, dir, "--loop", scalingLoop, "--trace", scalingTrace, "--expect", expect)
	assert.Equal(t, 3, res.code, "an expectation that does not hold exits 3")
	assert.Contains(t, res.stderr, `FAIL loop factory-scaling tick 2 (2026-11-21T10:00:01Z): applied web {"replicas":4}, expected no action (expected at `+expect+":1)")

	// A decision no rule defines: every tick fails to decide.
	undefined := filepath.Join(dir, "undefined.yaml")
	loop, err := os.ReadFile(filepath.Join(repoRoot, scalingLoop))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(undefined, []byte(strings.Replace(string(loop), "governor/reactive/decision", "governor/reactive/decisoin", 1)), 0o644))
	res = replayIn(t, dir, "--loop", undefined, "--trace", scalingTrace)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "FAIL loop factory-scaling tick 1 (2026-11-21T10:00:00Z): ")
	assert.Contains(t, res.stderr, "governor: replay failed: 60 failure(s)")

	// A loop the API server would refuse, with its words.
	invalid := filepath.Join(dir, "invalid.yaml")
	require.NoError(t, os.WriteFile(invalid, []byte(strings.Replace(string(loop), "replicas: {min: 1, max: 10}", "replicas: {min: 8, max: 5}", 1)), 0o644))
	assertOneLineFailure(t, replayIn(t, dir, "--loop", invalid, "--trace", scalingTrace), 1,
		`ControlLoop.governor.dev "factory-scaling" is invalid: spec.targets[0].replicas: Invalid value: min must not be above max`)
}

func TestReplayWithAWorkingFolderAndItsInputs(t *testing.T) {
	dir := t.TempDir()
	history := filepath.Join(dir, "h.jsonl")
	// --bundle NAME=DIR alone: the --bundles folder is not read.
	res := runIn(t, dir, governor, "replay", "--bundles", filepath.Join(dir, "nope"), "--bundle", "reactive="+filepath.Join(repoRoot, "policies/reactive"),
		"--loop", filepath.Join(repoRoot, scalingLoop), "--trace", filepath.Join(repoRoot, scalingTrace), "--history", history)
	assert.Equal(t, 1, res.code, "--bundles given on purpose is read")
	res = runIn(t, dir, governor, "replay", "--bundle", "reactive="+filepath.Join(repoRoot, "policies/reactive"),
		"--loop", filepath.Join(repoRoot, scalingLoop), "--trace", filepath.Join(repoRoot, scalingTrace), "--history", history)
	require.Equal(t, 0, res.code, res.stderr)
	lines, err := os.ReadFile(history)
	require.NoError(t, err)
	var third map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.Split(string(lines), "\n")[2]), &third))
	assert.Contains(t, third, "input")

	res = runIn(t, dir, governor, "replay", "--bundle", "reactive="+filepath.Join(repoRoot, "policies/reactive"),
		"--loop", filepath.Join(repoRoot, scalingLoop), "--trace", filepath.Join(repoRoot, scalingTrace), "--tick", "3", "--print-input")
	require.Equal(t, 0, res.code, res.stderr)
	inputFile := filepath.Join(dir, "input.json")
	require.NoError(t, os.WriteFile(inputFile, []byte(res.stdout), 0o644))
	var input map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &input))
	assert.JSONEq(t, string(mustJSON(t, third["input"])), res.stdout, "the history's input is --print-input's")

	// The printed input decides in eval as it did in the replay.
	eval := run(t, "", governor, "eval", "--bundle", filepath.Join(repoRoot, "policies/reactive"), "--decision", "governor/reactive/decision", "--input", inputFile)
	require.Equal(t, 0, eval.code, eval.stderr)
	assert.Contains(t, eval.stdout, `"replicas": 5`)

	assertOneLineFailure(t, runIn(t, dir, governor, "replay", "--bundle", "reactive", "--loop", filepath.Join(repoRoot, scalingLoop),
		"--trace", filepath.Join(repoRoot, scalingTrace)), 1, `--bundle "reactive": want NAME=DIR`)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestBundleCheckRunsTheGate(t *testing.T) {
	res := run(t, "", governor, "bundle", "check", "policies/reactive", "--decision", "governor/reactive/decision")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "pass: reactive@")

	assertOneLineFailure(t, run(t, "", governor, "bundle", "check", "policies/reactive", "--decision", "governor/reactive/decisio"), 2,
		"refused at prepare: decision governor/reactive/decisio is undefined")

	failing := writeTree(t, map[string]string{
		".manifest":   `{"revision": "1"}`,
		"b.rego":      "package b\n\nx := 1\n",
		"b_test.rego": "package b_test\n\nimport data.b\n\ntest_x if b.x == 2\n",
	})
	assertOneLineFailure(t, run(t, "", governor, "bundle", "check", failing), 2, "refused at test: 1 of the bundle's tests failed: data.b_test.test_x")
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	assertOneLineFailure(t, run(t, "", governor, "bundle", "build", failing, "-o", out), 2, "(--skip-gate packs it all the same)")
	assert.NoFileExists(t, out)
	res = run(t, "", governor, "bundle", "build", failing, "-o", out, "--skip-gate")
	require.Equal(t, 0, res.code, res.stderr)
	assert.FileExists(t, out)
	assertOneLineFailure(t, run(t, "", governor, "bundle", "check", out), 2, "refused at test")
}

// The skeleton passes every check an author runs, exactly as generated.
func TestInitSkeletonPassesAsGenerated(t *testing.T) {
	dir := t.TempDir()
	res := runIn(t, dir, governor, "init", "api")
	require.Equal(t, 0, res.code, res.stderr)
	for _, args := range [][]string{
		{"test", "api"},
		{"test", "--contract", "-b", "api"},
		{"bundle", "check", "api", "--decision", "api/decision"},
		{"replay", "--bundle", "api=api", "--loop", "api/loop.yaml", "--trace", "api/trace.jsonl", "--expect", "api/expect.jsonl"},
		{"fmt", "-l", "--fail", "api"},
		{"check", "--strict", "api"},
	} {
		res := runIn(t, dir, governor, args...)
		assert.Equal(t, 0, res.code, "governor %v: %s%s", args, res.stdout, res.stderr)
	}
	res = runIn(t, dir, governor, "bundle", "build", "api", "-o", "api.tar.gz")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "built api@api-1")

	assertOneLineFailure(t, runIn(t, dir, governor, "init", "api"), 1, "api exists")
	assertOneLineFailure(t, runIn(t, dir, governor, "init", "My-API"), 1, `bundle name "My-API": want lower-case letters`)
}

// Rego errors read as OPA prints them: several lines, the source and a
// caret under the column.
func TestRegoErrorsPrintedAsOPAPrintsThem(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.rego":      "package pe\n\ny := 2 else := 0\n",
		"p_test.rego": "package pe_test\n\ntest_y if data.pe.y == 2\n",
	})
	want := "p.rego:3: rego_parse_error: unexpected else keyword\n\ty := 2 else := 0\n\t       ^\n"
	up := run(t, "", opaBinary, "test", dir)
	require.Equal(t, 1, up.code)
	require.Contains(t, up.stdout+up.stderr, want)
	for _, cmd := range []string{"test", "check", "fmt"} {
		res := run(t, "", governor, cmd, dir)
		assert.Equal(t, 1, res.code, cmd)
		assert.Contains(t, res.stderr, want, cmd)
	}
}

func TestFmtAndCheck(t *testing.T) {
	dir := writeTree(t, map[string]string{"p.rego": "package p\nx:=1\n"})
	res := run(t, "", governor, "fmt", "-l", "--fail", dir)
	assert.Equal(t, 2, res.code)
	assert.Equal(t, filepath.Join(dir, "p.rego")+"\n", res.stdout)
	res = run(t, "", governor, "fmt", "-w", dir)
	require.Equal(t, 0, res.code, res.stderr)
	up := run(t, "", opaBinary, "fmt", "--fail", "-l", dir)
	assert.Equal(t, 0, up.code, "formatted as opa fmt formats: %s", up.stdout)

	strict := writeTree(t, map[string]string{"p.rego": "package p\n\nimport data.unused\n\nx := 1\n"})
	res = run(t, "", governor, "check", strict)
	assert.Equal(t, 0, res.code, res.stderr)
	res = run(t, "", governor, "check", "--strict", strict)
	assert.Equal(t, 1, res.code)
	assert.Contains(t, res.stderr, "rego_compile_error: import data.unused unused")
	up = run(t, "", opaBinary, "check", "--strict", strict)
	assert.Contains(t, up.stdout+up.stderr, "import data.unused unused")

	res = run(t, "", governor, "eval", "--bundle", "policies/reactive", "--decision", "governor/reactive", "--input",
		"test/testdata/decisions/reactive/cpu_and_memory_high.input.json")
	assertOneLineFailure(t, res, 1, "it is a package, not a rule: did you mean governor/reactive/decision?")
}
