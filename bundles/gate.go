package bundles

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"governor.dev/governor/decision"
)

// GateStep names the step of the activation gate a revision failed at.
type GateStep string

// The steps of the activation gate, in order.
const (
	// StepVerify and StepRead refuse a bundle before it is read whole: its
	// signature does not verify, or it is not a readable bundle (not a
	// tarball, a bad manifest, a syntax error).
	StepVerify  GateStep = "verify"
	StepRead    GateStep = "read"
	StepCompile GateStep = "compile"
	StepTest    GateStep = "test"
	StepPrepare GateStep = "prepare"
	// StepEvaluate makes each loop's last decision again, on the loop's
	// last input, with the new revision.
	StepEvaluate GateStep = "evaluate"
	StepActivate GateStep = "activate"
)

// Checks are what a new revision must pass besides its own tests.
type Checks struct {
	// Decisions are the decision paths it must prepare besides the
	// entrypoints it declares: those loops decide with, for a bundle that
	// declares none.
	Decisions []string
	// Probes are decisions it must make again, each on a loop's last input
	// that decided: a revision that errors there, breaks the contract or
	// takes longer than the loop's time limit is refused. A probe on a path
	// the revision does not declare as an entrypoint is left out: that loop
	// may no longer decide with it.
	Probes []Probe
	// Limits bound the builtins it may call and its decisions' output.
	Limits Limits
}

// Probe is the last decision a loop made with a bundle's active revision,
// for the gate to make again with a new one.
type Probe struct {
	// Loop is "namespace/name".
	Loop     string
	Decision string
	// Input is the input document the loop decided on.
	Input    map[string]any
	Contract decision.Contract
	// Timeout is the loop's time limit for a decision.
	Timeout time.Duration
}

// GateError is a revision refused by the activation gate. The engine's
// active revision is untouched.
type GateError struct {
	Bundle   string   // the bundle's name
	Revision string   // the manifest revision of the refused bundle
	Step     GateStep // where it failed
	// FailedTests are the bundle's own Rego tests that failed or errored
	// ("data.pkg.test_name"), for StepTest.
	FailedTests []string
	Err         error
}

func (e *GateError) Error() string {
	name := e.Bundle
	switch {
	case e.Revision != "":
		name += "@" + e.Revision
	case e.Step != StepVerify && e.Step != StepRead: // read, and has no revision
		name += "@unversioned"
	}
	return fmt.Sprintf("bundle %s refused at %s: %v", name, e.Step, e.Err)
}

func (e *GateError) Unwrap() error { return e.Err }

// Gate is the activation gate for a downloaded bundle: it compiles b
// within the checks' limits (a builtin that reaches outside the controller
// is refused there), runs the bundle's own Rego tests with OPA's tester (as
// RunTests does in bundle mode), prepares every entrypoint it declares and
// every decision path of the checks on the compiled revision, makes every
// probe's decision on it, and only then makes it engine's active revision. Any failure is a *GateError naming the step,
// and leaves the engine's active revision as it was.
func Gate(ctx context.Context, name, source string, b *bundle.Bundle, engine *Engine, checks Checks) (*Revision, error) {
	if b == nil {
		return nil, &GateError{Bundle: name, Step: StepCompile, Err: errors.New("no bundle")}
	}
	refuse := func(step GateStep, err error, failed []string) error {
		return &GateError{Bundle: name, Revision: b.Manifest.Revision, Step: step, FailedTests: failed, Err: err}
	}
	rev, err := compileBundle(ctx, name, source, b, checks.Limits)
	if err != nil {
		return nil, refuse(StepCompile, err, nil)
	}
	if failed, err := runBundleTests(ctx, name, b, checks.Limits); err != nil {
		return nil, refuse(StepTest, err, failed)
	}
	for _, d := range rev.Entrypoints() {
		if _, err := rev.Prepare(ctx, d); err != nil {
			return nil, refuse(StepPrepare, fmt.Errorf("declared entrypoint: %w", err), nil)
		}
	}
	for _, d := range checks.Decisions {
		if _, err := rev.Prepare(ctx, d); err != nil {
			return nil, refuse(StepPrepare, err, nil)
		}
	}
	for _, p := range checks.Probes {
		if rev.CheckEntrypoint(p.Decision) != nil {
			continue
		}
		req := Request{Decision: p.Decision, Input: p.Input, Contract: &p.Contract, Timeout: p.Timeout}
		if _, err := rev.Decide(ctx, req); err != nil {
			if ctx.Err() != nil {
				return nil, refuse(StepEvaluate, ctx.Err(), nil)
			}
			return nil, refuse(StepEvaluate, fmt.Errorf("on loop %s's last input: %w", p.Loop, err), nil)
		}
	}
	if err := engine.Activate(ctx, rev, checks.Decisions...); err != nil {
		return nil, refuse(StepActivate, err, nil)
	}
	return rev, nil
}

// runBundleTests runs the Rego tests in b with OPA's tester, configured as
// RunTests configures it in bundle mode. It returns the names of the tests
// that failed or errored, and an error when any did or tests could not run.
// A bundle without tests passes.
func runBundleTests(ctx context.Context, name string, b *bundle.Bundle, lim Limits) ([]string, error) {
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, err
	}
	defer store.Abort(ctx, txn)
	runner := tester.NewRunner().
		SetCompiler(testCompiler(ctx, store, txn, lim.capabilities())).
		SetStore(store).
		CapturePrintOutput(true).
		SetBundles(map[string]*bundle.Bundle{name: b}).
		SetTimeout(5 * time.Second).
		SetParallel(runtime.NumCPU())
	results, err := runner.RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("running the bundle's tests: %w", err)
	}
	var failed []string
	for r := range results {
		if r.Skip {
			continue
		}
		if r.Error != nil || r.Fail {
			failed = append(failed, r.Package+"."+r.Name)
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return failed, fmt.Errorf("%d of the bundle's tests failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil, nil
}
