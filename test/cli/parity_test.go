//go:build integration

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var shipped = []string{"reactive", "bandwidth", "deliberative"}

// TestShippedPoliciesDecideAsSpecified runs every example input through
// governor eval and checks the decision against the expected one, and
// against upstream opa eval of the same bundle.
func TestShippedPoliciesDecideAsSpecified(t *testing.T) {
	for _, policy := range shipped {
		inputs, err := filepath.Glob(filepath.Join(repoRoot, "test/testdata/decisions", policy, "*.input.json"))
		require.NoError(t, err)
		require.NotEmpty(t, inputs, "example inputs for %s", policy)
		for _, in := range inputs {
			name := policy + "/" + strings.TrimSuffix(filepath.Base(in), ".input.json")
			t.Run(name, func(t *testing.T) {
				decision := "governor/" + policy + "/decision"
				got := run(t, "", governor, "eval", "--bundle", "policies/"+policy, "--decision", decision, "--input", in)
				require.Equal(t, 0, got.code, got.stderr)

				want, err := os.ReadFile(strings.TrimSuffix(in, ".input.json") + ".want.json")
				require.NoError(t, err)
				assert.JSONEq(t, string(want), got.stdout)

				input, err := os.ReadFile(in)
				require.NoError(t, err)
				upstream := run(t, string(input), opaBinary, "eval", "--stdin-input", "--format=raw",
					"-b", "policies/"+policy, "data.governor."+policy+".decision")
				require.Equal(t, 0, upstream.code, upstream.stderr)
				assert.JSONEq(t, upstream.stdout, got.stdout, "governor eval and opa eval agree")
			})
		}
	}
}

type testOutcome struct {
	Package, Name string
	Fail, Skip    bool
	Error         any
}

func outcomes(t *testing.T, out string) []string {
	t.Helper()
	var results []testOutcome
	require.NoError(t, json.Unmarshal([]byte(out), &results), out)
	lines := make([]string, 0, len(results))
	for _, r := range results {
		state := "PASS"
		switch {
		case r.Skip:
			state = "SKIP"
		case r.Error != nil:
			state = "ERROR"
		case r.Fail:
			state = "FAIL"
		}
		lines = append(lines, r.Package+"."+r.Name+" "+state)
	}
	sort.Strings(lines)
	return lines
}

// TestGovernorTestReportsWhatOpaTestReports runs the shipped policies' tests
// with both tools, over the whole tree and bundle by bundle.
func TestGovernorTestReportsWhatOpaTestReports(t *testing.T) {
	runs := [][]string{{"policies/"}}
	for _, p := range shipped {
		runs = append(runs, []string{"-b", "policies/" + p})
	}
	total := 0
	for _, args := range runs {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ours := run(t, "", governor, append([]string{"test", "--format", "json"}, args...)...)
			theirs := run(t, "", opaBinary, append([]string{"test", "--format", "json"}, args...)...)
			require.Equal(t, 0, theirs.code, theirs.stderr)
			require.Equal(t, 0, ours.code, ours.stderr)
			got := outcomes(t, ours.stdout)
			assert.Equal(t, outcomes(t, theirs.stdout), got)
			assert.NotEmpty(t, got)
			for _, line := range got {
				assert.True(t, strings.HasSuffix(line, " PASS"), line)
			}
			if len(args) > 1 {
				total += len(got)
			}
		})
	}

	pretty := run(t, "", governor, "test", "policies/")
	require.Equal(t, 0, pretty.code, pretty.stderr)
	assert.Contains(t, pretty.stdout, "PASS: ")
	upstream := run(t, "", opaBinary, "test", "policies/")
	assert.Equal(t, upstream.stdout, pretty.stdout, "the same summary line")
	assert.Greater(t, total, 30, "the three bundles hold a real test suite")
}

// TestShippedPoliciesPassUpstreamChecks: opa check --strict and opa fmt
// accept the policies unchanged, and each bundle builds with opa build.
func TestShippedPoliciesPassUpstreamChecks(t *testing.T) {
	res := run(t, "", opaBinary, "check", "--strict", "policies/")
	assert.Equal(t, 0, res.code, res.stdout+res.stderr)
	res = run(t, "", opaBinary, "fmt", "--list", "policies/")
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Empty(t, res.stdout, "files opa fmt would change")
	for _, p := range shipped {
		res = run(t, "", opaBinary, "build", "-b", "policies/"+p, "-o", filepath.Join(t.TempDir(), p+".tar.gz"))
		assert.Equal(t, 0, res.code, res.stderr)
	}
}

// TestCoverageOfShippedPolicies: every rule of every shipped policy is
// exercised by its tests.
func TestCoverageOfShippedPolicies(t *testing.T) {
	res := run(t, "", governor, "test", "--coverage", "policies/")
	require.Equal(t, 0, res.code, res.stderr)
	var report struct {
		Files map[string]struct {
			Coverage float64 `json:"coverage"`
		} `json:"files"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &report))
	for _, p := range shipped {
		f := "policies/" + p + "/" + p + ".rego"
		require.Contains(t, report.Files, f)
		assert.GreaterOrEqual(t, report.Files[f].Coverage, 95.0, f)
	}
}
