package bundles

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
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
	_, err := Gate(ctx, "b", "test", gateBundle(t, "2", "2").Bundle(), e, []string{"t/nope"})
	var ge *GateError
	if !errors.As(err, &ge) || ge.Step != StepPrepare {
		t.Fatalf("want prepare refusal, got %v", err)
	}
	// A failing own test: refused at test, naming it.
	_, err = Gate(ctx, "b", "test", gateBundle(t, "3", "4").Bundle(), e, []string{"t/rev"})
	if !errors.As(err, &ge) || ge.Step != StepTest || len(ge.FailedTests) != 1 || ge.FailedTests[0] != "data.t.test_rev" {
		t.Fatalf("want test refusal, got %v", err)
	}
	if got := e.Active().Revision(); got != "1" {
		t.Fatalf("refusals changed the active revision to %s", got)
	}
	// A good revision goes live.
	rev, err := Gate(ctx, "b", "test", gateBundle(t, "5", "5").Bundle(), e, []string{"t/rev"})
	if err != nil || e.Active() != rev || evalRev(t, e) != "5" {
		t.Fatalf("good revision not activated: %v", err)
	}
}
