//go:build integration

package cli

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTree writes files under a new temporary directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// assertOneLineFailure: exit 1 (or code), nothing on stdout, one line on
// stderr that says why, and never a panic.
func assertOneLineFailure(t *testing.T, res result, code int, why string) {
	t.Helper()
	assert.Equal(t, code, res.code, "exit code; stderr: %s", res.stderr)
	assert.Empty(t, res.stdout)
	lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
	assert.Len(t, lines, 1, "one line: %q", res.stderr)
	assert.True(t, strings.HasPrefix(res.stderr, "governor: "), res.stderr)
	assert.Contains(t, res.stderr, why)
	assert.NotContains(t, res.stderr, "panic")
	assert.NotContains(t, res.stderr, "goroutine ")
}

func TestEvalRefusesBadInputWithAClearMessage(t *testing.T) {
	const reactive = "governor/reactive/decision"
	goodInput := filepath.Join(repoRoot, "test/testdata/decisions/reactive")
	inputs, err := filepath.Glob(filepath.Join(goodInput, "*.input.json"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	anInput := inputs[0]

	bad := writeTree(t, map[string]string{
		"wrong/.manifest": `{"revision": "w1", "roots": ["w"]}`,
		"wrong/w.rego": `package w

not_an_object := ["scale", "web"]

wrong_types := {"actions": [{"target": "web", "set": {"replicas": "three", "bandwidth": {"egress": 400}}}], "events": "High cpu"}

unknown_target := {"actions": [{"target": "payments", "set": {"replicas": 2}}]}

conflict := {"events": ["a"]} if input.tick > 0

conflict := {"events": ["b"]} if input.tick > 0

undefined_here := {} if false
`,
		"broken/.manifest":  `{"revision": "b1", "roots": ["b"]}`,
		"broken/b.rego":     "package b\n\ndecision := {\"actions\": scale(input)}\n",
		"unparsable/u.rego": "package u\n\ndecision := {\n",
		"outside/.manifest": `{"revision": "o1", "roots": ["elsewhere"]}`,
		"outside/o.rego":    "package o\n\ndecision := {}\n",
		"notjson.json":      `{"tick": 1, "targets": {"web": `,
		"array.json":        `[{"tick": 1}]`,
		"empty.json":        "",
		"two.json":          `{"tick": 1} {"tick": 2}`,
		"input.json":        `{"tick": 1, "targets": {"web": {"replicas": 2}}}`,
	})
	in := filepath.Join(bad, "input.json")
	wrong := filepath.Join(bad, "wrong")

	cases := []struct {
		name  string
		stdin string
		args  []string
		why   string
	}{
		{"input not JSON", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", filepath.Join(bad, "notjson.json")}, "not valid JSON"},
		{"input not an object", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", filepath.Join(bad, "array.json")}, "must be a JSON object, got array"},
		{"input empty", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", filepath.Join(bad, "empty.json")}, "empty"},
		{"input two documents", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", filepath.Join(bad, "two.json")}, "more than one JSON value"},
		{"stdin not JSON", "tick=1", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", "-"}, "bad input stdin: not valid JSON"},
		{"input file missing", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", filepath.Join(bad, "nope.json")}, "no such file"},
		{"bundle missing", "", []string{"--bundle", filepath.Join(bad, "nope"), "--decision", reactive, "--input", anInput}, "cannot load bundle"},
		{"bundle does not compile", "", []string{"--bundle", filepath.Join(bad, "broken"), "--decision", "b/decision", "--input", in}, "broken/b.rego:3: rego_type_error: undefined function scale"},
		{"bundle does not parse", "", []string{"--bundle", filepath.Join(bad, "unparsable"), "--decision", "u/decision", "--input", in}, "unparsable/u.rego:4: rego_parse_error"},
		{"module outside roots", "", []string{"--bundle", filepath.Join(bad, "outside"), "--decision", "o/decision", "--input", in}, "do not permit 'package o'"},
		{"decision not an object", "", []string{"--bundle", wrong, "--decision", "w/not_an_object", "--input", in}, "decision must be an object, got array of 2"},
		{"wrong types", "", []string{"--bundle", wrong, "--decision", "w/wrong_types", "--input", in}, `actions[0].set.replicas: must be an integer, got string "three"`},
		{"wrong types, all reported", "", []string{"--bundle", wrong, "--decision", "w/wrong_types", "--input", in}, "events: must be an array of strings"},
		{"unknown target", "", []string{"--bundle", wrong, "--decision", "w/unknown_target", "--input", in}, `actions[0].target: "payments" is not one of the loop's targets [web]`},
		{"conflicting rules", "", []string{"--bundle", wrong, "--decision", "w/conflict", "--input", in}, "conflicting values"},
		{"undefined for this input", "", []string{"--bundle", wrong, "--decision", "w/undefined_here", "--input", in}, "returned no value for this input"},
		{"no such decision", "", []string{"--bundle", "policies/reactive", "--decision", "governor/reactive/decisions", "--input", anInput}, "no rule defines it"},
		{"malformed decision path", "", []string{"--bundle", "policies/reactive", "--decision", "governor/re-active", "--input", anInput}, "not a valid path segment"},
		{"missing flag", "", []string{"--bundle", "policies/reactive", "--input", anInput}, `required flag(s) "decision" not set`},
		{"bad explain mode", "", []string{"--bundle", "policies/reactive", "--decision", reactive, "--input", anInput, "--explain=everything"}, `unknown explain mode "everything"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertOneLineFailure(t, run(t, tc.stdin, governor, append([]string{"eval"}, tc.args...)...), 1, tc.why)
		})
	}
}

func TestEvalExplainTracesToStderr(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(repoRoot, "test/testdata/decisions/reactive/*.input.json"))
	require.NoError(t, err)
	res := run(t, "", governor, "eval", "--bundle", "policies/reactive", "--decision", "governor/reactive/decision", "--input", inputs[0], "--explain")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stderr, "Enter data.governor.reactive.decision")
	assert.Contains(t, res.stderr, "policies/reactive/reactive.rego:")
	assert.True(t, strings.HasPrefix(res.stdout, "{"), "stdout stays the decision alone")
}

func TestTestCommandExitCodes(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.rego":              "package p\n\nn := input.n + 1\n",
		"pass_test.rego":      "package p_test\n\nimport data.p\n\ntest_ok if p.n == 2 with input as {\"n\": 1}\n",
		"more/fail_test.rego": "package p_fail_test\n\nimport data.p\n\ntest_bad if p.n == 3 with input as {\"n\": 1}\n",
	})
	res := run(t, "", governor, "test", dir)
	assert.Equal(t, 2, res.code, "a failing test exits 2, as opa test does")
	assert.Contains(t, res.stdout, "data.p_fail_test.test_bad: FAIL")
	assert.Contains(t, res.stdout, "FAIL: 1/2")
	assert.Contains(t, res.stderr, "1 of 2 tests failed")

	res = run(t, "", governor, "test", "--run", "test_ok", "-v", dir)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "data.p_test.test_ok: PASS")

	res = run(t, "", governor, "test", "--run", "test_ok", "--threshold", "100", dir)
	assert.Equal(t, 2, res.code, "coverage below threshold exits 2")
	assert.Contains(t, res.stderr, "coverage")

	assertOneLineFailure(t, run(t, "", governor, "test", filepath.Join(dir, "p.rego")), 1, "no tests found")
	assertOneLineFailure(t, run(t, "", governor, "test", filepath.Join(dir, "nope")), 1, "no such file")
}

func TestBundleBuild(t *testing.T) {
	out := filepath.Join(t.TempDir(), "reactive.tar.gz")
	res := run(t, "", governor, "bundle", "build", "policies/reactive", "-o", out, "--revision", "reactive-99")
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "built reactive@reactive-99 from policies/reactive")

	// Upstream OPA reads our tarball, with the stamped revision.
	inspect := run(t, "", opaBinary, "inspect", "--format", "json", out)
	require.Equal(t, 0, inspect.code, inspect.stderr)
	assert.Contains(t, inspect.stdout, `"revision": "reactive-99"`)

	// And governor decides from it as from the directory.
	inputs, err := filepath.Glob(filepath.Join(repoRoot, "test/testdata/decisions/reactive/*.input.json"))
	require.NoError(t, err)
	fromDir := run(t, "", governor, "eval", "--bundle", "policies/reactive", "--decision", "governor/reactive/decision", "--input", inputs[0])
	fromTar := run(t, "", governor, "eval", "--bundle", out, "--decision", "governor/reactive/decision", "--input", inputs[0])
	require.Equal(t, 0, fromTar.code, fromTar.stderr)
	assert.JSONEq(t, fromDir.stdout, fromTar.stdout)

	broken := writeTree(t, map[string]string{".manifest": `{"revision": "x"}`, "b.rego": "package b\n\nd := nope(1)\n"})
	failed := filepath.Join(t.TempDir(), "broken.tar.gz")
	// The gate refuses it first (exit 2), naming file and line.
	assertOneLineFailure(t, run(t, "", governor, "bundle", "build", broken, "-o", failed), 2, "b.rego:3")
	assert.NoFileExists(t, failed)
}

func TestVersion(t *testing.T) {
	res := run(t, "", governor, "version")
	require.Equal(t, 0, res.code)
	assert.Contains(t, res.stdout, "opa 1.")
	assert.Contains(t, res.stdout, "governor ")
}

func TestReplayOfTheShippedTraces(t *testing.T) {
	dir := t.TempDir()
	plot, history := filepath.Join(dir, "r.png"), filepath.Join(dir, "r.jsonl")
	res := run(t, "", governor, "replay",
		"--loop", "test/traces/factory-scaling/scaling.yaml", "--loop", "test/traces/factory-scaling/priorities.yaml",
		"--trace", "test/traces/factory-scaling/trace.jsonl", "--plot", plot, "--history", history)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "Raise memory above cpu")
	assert.Contains(t, res.stdout, `params {"priorities":["memory","cpu"]}`)
	assert.Contains(t, res.stderr, "60 ticks of 2 loop(s)")
	f, err := os.Open(plot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Greater(t, img.Bounds().Dx(), 600)
	lines, err := os.ReadFile(history)
	require.NoError(t, err)
	assert.Equal(t, 120, strings.Count(string(lines), "\n"), "one record per loop tick")

	res = run(t, "", governor, "replay", "--loop", "test/traces/factory-qos/loop.yaml",
		"--trace", "test/traces/factory-qos/trace.jsonl", "--plot", plot, "--history", history)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "High jitter")
	assert.Contains(t, res.stdout, "Low jitter")

	assertOneLineFailure(t, run(t, "", governor, "replay", "--loop", "test/traces/factory-scaling/priorities.yaml",
		"--trace", "test/traces/factory-scaling/trace.jsonl", "--plot", plot, "--history", history), 1, "which is not in the replay")
	assertOneLineFailure(t, run(t, "", governor, "replay", "--loop", "test/traces/factory-qos/loop.yaml",
		"--trace", "test/traces/factory-qos/loop.yaml", "--plot", plot, "--history", history), 1, "loop.yaml:1")
}
