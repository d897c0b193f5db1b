package bundles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"governor.dev/governor/decision"
)

func gateBundle(t *testing.T, rev, testRev string) *Revision {
	t.Helper()
	r, err := Build(context.Background(), BuildOptions{Dir: testBundleDir(t, rev, testRev), Output: filepath.Join(t.TempDir(), "b.tar.gz")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGate(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(gateBundle(t, "1", "1"))

	// A decision path the new revision does not define: refused at prepare.
	_, err := Gate(ctx, "b", "test", gateBundle(t, "2", "2").Bundle(), e, Checks{Decisions: []string{"t/nope"}})
	var ge *GateError
	if !errors.As(err, &ge) || ge.Step != StepPrepare {
		t.Fatalf("want prepare refusal, got %v", err)
	}
	// A failing own test: refused at test, naming it.
	_, err = Gate(ctx, "b", "test", gateBundle(t, "3", "4").Bundle(), e, Checks{Decisions: []string{"t/rev"}})
	if !errors.As(err, &ge) || ge.Step != StepTest || len(ge.FailedTests) != 1 || ge.FailedTests[0] != "data.t.test_rev" {
		t.Fatalf("want test refusal, got %v", err)
	}
	if got := e.Active().Revision(); got != "1" {
		t.Fatalf("refusals changed the active revision to %s", got)
	}
	// A good revision goes live.
	rev, err := Gate(ctx, "b", "test", gateBundle(t, "5", "5").Bundle(), e, Checks{Decisions: []string{"t/rev"}})
	if err != nil || e.Active() != rev || evalRev(t, e) != "5" {
		t.Fatalf("good revision not activated: %v", err)
	}
}

// TestEnginePins: a pinned request decides on the retained revision it
// names; only the newest Retained revisions are kept.
func TestEnginePins(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(gateBundle(t, "1", "1"))
	if _, err := Gate(ctx, "b", "test", gateBundle(t, "2", "2").Bundle(), e, Checks{Decisions: []string{"t/rev"}}); err != nil {
		t.Fatal(err)
	}
	for pin, want := range map[string]string{"": "b@2", "2": "b@2", "1": "b@1"} {
		r, err := e.Revision(pin)
		if err != nil || r.String() != want {
			t.Fatalf("pin %q: %v %v, want %s", pin, r, err, want)
		}
		res, err := e.Decide(ctx, Request{Decision: "t/rev", Revision: pin, Input: map[string]any{}})
		var invalid *decision.InvalidDecisionError // t/rev is a number, not a decision
		if !errors.As(err, &invalid) || invalid.Revision != want || res != nil {
			t.Fatalf("pin %q decided on %v (%v), want %s", pin, res, err, want)
		}
	}
	_, err := e.Revision("7")
	var none *NoRevisionError
	if !errors.As(err, &none) || err.Error() != `bundle b has no revision "7" (it holds: 2, 1)` {
		t.Fatalf("pin 7: %v", err)
	}
	if _, err := NewEmptyEngine("b").Revision(""); !errors.As(err, &none) || err.Error() != "bundle b has no active revision yet" {
		t.Fatalf("empty engine: %v", err)
	}

	// A revision without t/rev would break the loops deciding it: refused.
	noRev := testBundleDir(t, "3", "3")
	if err := os.WriteFile(filepath.Join(noRev, "t.rego"), []byte("package t\n\nother := 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(noRev, "t_test.rego")); err != nil {
		t.Fatal(err)
	}
	b, err := readBundle(noRev, "b", noRev, nil, DefaultMaxBundleFileBytes)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Gate(ctx, "b", "test", b, e, Checks{Decisions: []string{"t/rev"}})
	var ge *GateError
	if !errors.As(err, &ge) || ge.Step != StepPrepare || e.Active().Revision() != "2" {
		t.Fatalf("want a prepare refusal keeping revision 2, got %v", err)
	}

	for i := 10; i < 10+Retained; i++ {
		if _, err := Gate(ctx, "b", "test", gateBundle(t, fmt.Sprint(i), fmt.Sprint(i)).Bundle(), e, Checks{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.Revisions(); len(got) != Retained || got[0] != fmt.Sprint(9+Retained) || slices.Contains(got, "2") {
		t.Fatalf("retained = %v", got)
	}
}
