package bundles

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const scaledPolicy = `package t

decision := {"actions": [{"target": "web", "set": {"replicas": input.n + 1}}]}
`

func TestRunTestsCountsOutcomes(t *testing.T) {
	dir := writeBundle(t, map[string]string{
		".manifest": `{"revision": "r1", "roots": ["t", "t_test"]}`,
		"p.rego":    scaledPolicy,
		"p_test.rego": `package t_test

import data.t

test_scales_up if t.decision.actions[0].set.replicas == 4 with input as {"n": 3}

test_wrong if t.decision.actions[0].set.replicas == 5 with input as {"n": 3}

todo_test_later if false
`,
	})
	for _, bundleMode := range []bool{false, true} {
		var out bytes.Buffer
		summary, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, BundleMode: bundleMode, Output: &out})
		require.NoError(t, err)
		assert.Equal(t, TestSummary{Passed: 1, Failed: 1, Skipped: 1}, summary)
		assert.False(t, summary.OK())
		assert.Contains(t, out.String(), "data.t_test.test_wrong: FAIL")
		assert.Contains(t, out.String(), "PASS: 1/3")
	}
}

func TestRunTestsJSONAndFilter(t *testing.T) {
	dir := writeBundle(t, map[string]string{
		"p.rego": scaledPolicy,
		"p_test.rego": `package t_test

import data.t

test_one if t.decision.actions[0].set.replicas == 2 with input as {"n": 1}

test_two if t.decision.actions[0].set.replicas == 3 with input as {"n": 2}
`,
	})
	var out bytes.Buffer
	summary, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, Format: "json", Run: "two", Output: &out})
	require.NoError(t, err)
	assert.Equal(t, TestSummary{Passed: 1}, summary)
	var results []map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &results))
	require.Len(t, results, 1)
	assert.Equal(t, "test_two", results[0]["name"])
}

func TestRunTestsCoverageThreshold(t *testing.T) {
	dir := writeBundle(t, map[string]string{
		"p.rego": scaledPolicy + "\nunused := {\"events\": [\"never\"]} if input.n > 100\n",
		"p_test.rego": `package t_test

import data.t

test_one if t.decision.actions[0].set.replicas == 2 with input as {"n": 1}
`,
	})
	var out bytes.Buffer
	summary, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, Threshold: 99, Output: &out})
	var te *cover.CoverageThresholdError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 1, summary.Passed)
	assert.Less(t, te.Coverage, 99.0)
	assert.Greater(t, te.Coverage, 0.0)

	out.Reset()
	_, err = RunTests(context.Background(), TestOptions{Paths: []string{dir}, Coverage: true, Output: &out})
	require.NoError(t, err)
	var report struct {
		Coverage float64 `json:"coverage"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &report))
	assert.Equal(t, te.Coverage, report.Coverage)
}

func TestRunTestsRefusesWhatCannotRun(t *testing.T) {
	ctx := context.Background()
	broken := writeBundle(t, map[string]string{"p_test.rego": "package t_test\n\ntest_x if nope(1)\n"})
	_, err := RunTests(ctx, TestOptions{Paths: []string{broken}, Output: &bytes.Buffer{}})
	assert.ErrorContains(t, err, "undefined function nope")

	_, err = RunTests(ctx, TestOptions{Paths: []string{broken}, Threshold: 101})
	assert.ErrorContains(t, err, "between 0 and 100")
	_, err = RunTests(ctx, TestOptions{Paths: []string{broken}, Format: "xml"})
	assert.ErrorContains(t, err, `unknown format "xml"`)
	_, err = RunTests(ctx, TestOptions{Paths: []string{broken}, Explain: "loud"})
	assert.ErrorContains(t, err, `unknown explain mode "loud"`)

	summary, err := RunTests(ctx, TestOptions{Paths: []string{writeBundle(t, map[string]string{"p.rego": scaledPolicy})}, Output: &bytes.Buffer{}})
	require.NoError(t, err)
	assert.False(t, summary.OK(), "no tests found is not a pass")
}

// A decision on a target the loop does not have passes a test that only
// looks at it, fails under Contract, and the library lets a test assert it.
func TestRunTestsContract(t *testing.T) {
	dir := writeBundle(t, map[string]string{
		"p.rego": `package c

decision := {"actions": [{"target": input.to, "set": {"replicas": 3}}]}
`,
		"p_test.rego": `package c_test

import data.c
import data.governor.contract

inp(to) := {"to": to, "targets": {"web": {}}, "loop": {"kind": "Reactive"}}

test_to_web if contract.valid(c.decision, inp("web")) with input as inp("web")

test_to_db_is_invalid if {
	some p in contract.problems(c.decision, inp("db")) with input as inp("db")
	contains(p, "not one of the loop's targets")
}

test_to_db_looks_fine if c.decision.actions[0].target == "db" with input as inp("db")
`,
	})
	var out bytes.Buffer
	summary, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, Output: &out})
	require.NoError(t, err)
	assert.Equal(t, TestSummary{Passed: 3}, summary, out.String())

	out.Reset()
	summary, err = RunTests(context.Background(), TestOptions{Paths: []string{dir}, Output: &out, Contract: true})
	require.NoError(t, err)
	assert.Equal(t, 2, summary.Failed, out.String())
	assert.Contains(t, out.String(), "data.c_test.test_to_db_looks_fine: FAIL")
	assert.Contains(t, out.String(), `contract: data.c.decision on the test's input would be rejected: actions[0].target: "db" is not one of the loop's targets [web]`)
}

func TestRunTestsVarValuesAndPrettyCoverage(t *testing.T) {
	dir := writeBundle(t, map[string]string{
		"p.rego": scaledPolicy,
		"p_test.rego": `package t_test

import data.t

test_wrong if {
	n := t.decision.actions[0].set.replicas with input as {"n": 3}
	n == 5
}
`,
	})
	var out bytes.Buffer
	_, err := RunTests(context.Background(), TestOptions{Paths: []string{dir}, Output: &out, VarValues: true})
	require.NoError(t, err)
	assert.Regexp(t, `n == 5\n\s+\|\n\s+4`, out.String(), "the failing expression and n's value, as opa test --var-values")

	out.Reset()
	_, err = RunTests(context.Background(), TestOptions{Paths: []string{dir}, Output: &out, Coverage: true, Format: "pretty"})
	require.NoError(t, err)
	assert.Contains(t, out.String(), "FAIL: 1/1")
	assert.Regexp(t, `COVERAGE\s+FILE\s+NOT COVERED`, out.String())
	assert.Regexp(t, `\d+\.\d\d%\s+Overall Coverage`, out.String())
}
