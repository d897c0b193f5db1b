package bundles

import (
	"context"
	"fmt"
	"io"
	"maps"
	"runtime"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/runtime/info"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// TestOptions are those of `opa test` that governor test supports.
type TestOptions struct {
	Paths []string
	// BundleMode loads each path as a bundle (directory or tarball) instead
	// of loading every .rego, .json and .yaml file found under it.
	BundleMode bool
	Verbose    bool
	// Explain filters the trace of verbose or failing tests: fails, full,
	// notes or debug ("" shows notes and failures when Verbose).
	Explain   string
	Coverage  bool
	Threshold float64 // percent; > 0 implies Coverage
	// Format is "pretty" or "json" (ignored with Coverage, which reports JSON).
	Format string
	// Run runs only the tests whose names match this regular expression.
	Run     string
	Timeout time.Duration // per test; 5s when zero
	Output  io.Writer
}

// TestSummary counts the outcomes of a test run.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// OK is true when tests ran and none failed or errored.
func (s TestSummary) OK() bool {
	return s.Failed == 0 && s.Errored == 0 && s.Passed+s.Skipped > 0
}

// RunTests runs the Rego tests found under opts.Paths with OPA's tester,
// configured as `opa test` configures it, so both report the same results.
// The error is for what stops tests from running (load and compile errors)
// and for a coverage threshold not met.
func RunTests(ctx context.Context, opts TestOptions) (TestSummary, error) {
	var summary TestSummary
	if opts.Threshold < 0 || opts.Threshold > 100 {
		return summary, fmt.Errorf("coverage threshold %v must be between 0 and 100", opts.Threshold)
	}
	if opts.Threshold > 0 {
		opts.Coverage = true
	}
	if _, err := FilterTrace(opts.Explain, nil); err != nil {
		return summary, err
	}
	modules, bundles, store, err := loadTests(opts)
	if err != nil {
		return summary, err
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return summary, err
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithCapabilities(ast.CapabilitiesForThisVersion()).
		WithUseTypeCheckAnnotations(true)
	runtimeInfo, err := info.New()
	if err != nil {
		return summary, err
	}
	var cov *cover.Cover
	var coverTracer topdown.QueryTracer
	if opts.Coverage {
		cov = cover.New()
		coverTracer = cov
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		CapturePrintOutput(true).
		EnableTracing(opts.Verbose).
		StackTraces(true).
		SetCoverageRuns([]cover.Kind{cover.KindIndexExcluded, cover.KindEarlyExit}).
		SetCoverageQueryTracer(coverTracer).
		SetRuntime(runtimeInfo).
		SetModules(modules).
		SetBundles(bundles).
		SetTimeout(timeout).
		Filter(opts.Run).
		SetParallel(runtime.NumCPU())

	reporter, err := testReporter(opts, cov, modules)
	if err != nil {
		return summary, err
	}
	results, err := runner.RunTests(ctx, txn)
	if err != nil {
		return summary, err
	}
	return report(opts, reporter, results)
}

// loadTests loads the modules and data under opts.Paths as `opa test` does: as bundles in
// bundle mode (the modules then only for coverage), else file by file.
func loadTests(opts TestOptions) (map[string]*ast.Module, map[string]*bundle.Bundle, storage.Store, error) {
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	if !opts.BundleMode {
		modules, store, err := tester.LoadWithParserOptions(opts.Paths, nil, popts)
		return modules, nil, store, err
	}
	bundles, store, err := tester.LoadBundlesWithParserOptions(opts.Paths, nil, popts)
	if err != nil || !opts.Coverage {
		return nil, bundles, store, err
	}
	modules := map[string]*ast.Module{}
	for name, b := range bundles {
		maps.Copy(modules, b.ParsedModules(name))
	}
	return modules, bundles, store, nil
}

// testReporter is the reporter of opts' format: with coverage, the JSON coverage report
// (over modules).
func testReporter(opts TestOptions, cov *cover.Cover, modules map[string]*ast.Module) (tester.Reporter, error) {
	switch {
	case opts.Coverage:
		return tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: opts.Output, Threshold: opts.Threshold, Verbose: opts.Verbose}, nil
	case opts.Format == "json":
		return tester.JSONReporter{Output: opts.Output}, nil
	case opts.Format == "" || opts.Format == "pretty":
		return tester.PrettyReporter{Verbose: opts.Verbose, Output: opts.Output}, nil
	}
	return nil, fmt.Errorf("unknown format %q (want pretty or json)", opts.Format)
}

// report counts the results while the reporter reports them, their traces filtered as
// opts asks.
func report(opts TestOptions, reporter tester.Reporter, results <-chan *tester.Result) (TestSummary, error) {
	var summary TestSummary
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range results {
			switch {
			case r.Skip:
				summary.Skipped++
			case r.Error != nil:
				summary.Errored++
			case r.Fail:
				summary.Failed++
			default:
				summary.Passed++
			}
			r.Trace = filterTrace(opts, r.Trace)
			counted <- r
		}
	}()
	err := reporter.Report(counted)
	for range counted { // drain if the reporter stopped early
	}
	return summary, err
}

func filterTrace(opts TestOptions, trace []*topdown.Event) []*topdown.Event {
	if opts.Explain == "" {
		if !opts.Verbose {
			return nil
		}
		return lineage.Filter(trace, func(e *topdown.Event) bool {
			return e.Op == topdown.NoteOp || e.Op == topdown.FailOp
		})
	}
	filtered, _ := FilterTrace(opts.Explain, trace) // mode checked in RunTests
	return filtered
}

// FilterTrace keeps the part of an evaluation trace an explain mode asks
// for: fails, full, notes or debug ("" keeps nothing).
func FilterTrace(mode string, trace []*topdown.Event) ([]*topdown.Event, error) {
	switch mode {
	case "":
		return nil, nil
	case "fails":
		return lineage.Fails(trace), nil
	case "full":
		return lineage.Full(trace), nil
	case "notes":
		return lineage.Notes(trace), nil
	case "debug":
		return lineage.Debug(trace), nil
	}
	return nil, fmt.Errorf("unknown explain mode %q (want fails, full, notes or debug)", mode)
}
