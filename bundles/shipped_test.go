package bundles

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped policies, in the fast tier: their Rego tests pass with OPA's
// tester, and every example decision of test/testdata/decisions comes out as
// specified. (test/cli, in the integration tier, checks the same through the
// governor binary, side by side with upstream opa.)

var shippedPolicies = []string{"reactive", "bandwidth", "deliberative"}

func TestShippedPoliciesPassTheirRegoTests(t *testing.T) {
	for _, policy := range shippedPolicies {
		t.Run(policy, func(t *testing.T) {
			var out bytes.Buffer
			sum, err := RunTests(context.Background(), TestOptions{
				Paths: []string{filepath.Join("..", "policies", policy)}, BundleMode: true, Output: &out,
			})
			if err != nil || !sum.OK() {
				t.Fatalf("%+v, %v\n%s", sum, err, out.String())
			}
			if sum.Passed < 10 {
				t.Errorf("only %d Rego tests passed: %s holds a real test suite", sum.Passed, policy)
			}
		})
	}
}

func TestShippedPoliciesDecideAsSpecified(t *testing.T) {
	for _, policy := range shippedPolicies {
		rev, err := Load(context.Background(), filepath.Join("..", "policies", policy))
		if err != nil {
			t.Fatal(err)
		}
		inputs, err := filepath.Glob(filepath.Join("..", "test", "testdata", "decisions", policy, "*.input.json"))
		if err != nil || len(inputs) == 0 {
			t.Fatalf("example inputs for %s: %v (%v)", policy, inputs, err)
		}
		for _, in := range inputs {
			name := policy + "/" + strings.TrimSuffix(filepath.Base(in), ".input.json")
			t.Run(name, func(t *testing.T) {
				f, err := os.Open(in)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				input, err := ReadInput(f, in)
				if err != nil {
					t.Fatal(err)
				}
				res, err := rev.Decide(context.Background(), Request{Decision: "governor/" + policy + "/decision", Input: input})
				if err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(strings.TrimSuffix(in, ".input.json") + ".want.json")
				if err != nil {
					t.Fatal(err)
				}
				got, err := json.Marshal(res.Raw)
				if err != nil {
					t.Fatal(err)
				}
				if !jsonEqual(t, want, got) {
					t.Errorf("decision:\n got %s\nwant %s", got, want)
				}
			})
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
