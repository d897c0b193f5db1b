package bundles

import (
	"context"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/runtime/info"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"

	"governor.dev/governor/decision/contractlib"
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
	// Format is "pretty" or "json"; with Coverage, JSON is OPA's coverage
	// report, pretty the test report then each file's coverage and the
	// lines not covered.
	Format string
	// Run runs only the tests whose names match this regular expression.
	Run     string
	Timeout time.Duration // per test; 5s when zero
	Output  io.Writer
	// VarValues shows the failing expression and its local variables'
	// values, as opa test --var-values.
	VarValues bool
	// Contract fails a test when a rule named decision that it evaluates
	// returns, on the input the test gave it, a decision the controller
	// would reject.
	Contract bool
}

// TestSummary counts the outcomes of a test run.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// OK is true when tests ran and none failed or errored.
func (s TestSummary) OK() bool {
	return s.Failed == 0 && s.Errored == 0 && s.Passed+s.Skipped > 0
}

// testCompiler is the compiler `opa test` runs tests with, within caps.
func testCompiler(ctx context.Context, store storage.Store, txn storage.Transaction, caps *ast.Capabilities) *ast.Compiler {
	return ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithCapabilities(caps).
		WithUseTypeCheckAnnotations(true)
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

	compiler := testCompiler(ctx, store, txn, ast.CapabilitiesForThisVersion()).
		WithRewriteTestRules(opts.VarValues)
	runModules, runBundles, err := withContractLibrary(opts, modules, bundles)
	if err != nil {
		return summary, err
	}
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
		EnableTracing(opts.Verbose || opts.VarValues || opts.Contract).
		StackTraces(true).
		SetCoverageRuns([]cover.Kind{cover.KindIndexExcluded, cover.KindEarlyExit}).
		SetCoverageQueryTracer(coverTracer).
		SetRuntime(runtimeInfo).
		SetModules(runModules).
		SetBundles(runBundles).
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
	var check func(*tester.Result)
	if opts.Contract {
		check = contractCheck(ctx, compiler, store, txn)
	}
	return report(opts, reporter, results, check)
}

// withContractLibrary are the modules and bundles to run: those loaded,
// and the contract library when a module refers to it (or opts.Contract)
// and none carries it; in bundle mode, as a bundle of its own, for the
// bundles are compiled together before the other modules.
func withContractLibrary(opts TestOptions, modules map[string]*ast.Module, bundles map[string]*bundle.Bundle) (map[string]*ast.Module, map[string]*bundle.Bundle, error) {
	all := maps.Clone(modules)
	if all == nil {
		all = map[string]*ast.Module{}
	}
	for name, b := range bundles {
		maps.Copy(all, b.ParsedModules(name))
	}
	need := opts.Contract
	for _, m := range all {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			need = need || r.HasPrefix(contractlib.Package)
			return need
		})
	}
	if !need || contractlib.Carried(all) {
		return modules, bundles, nil
	}
	lib, err := contractlib.Module()
	if err != nil {
		return nil, nil, err
	}
	if len(bundles) > 0 {
		out := maps.Clone(bundles)
		file := bundle.ModuleFile{URL: contractlib.FileName, Path: contractlib.FileName, Raw: []byte(contractlib.Source), Parsed: lib}
		// A bundle rooted everywhere takes it in; one more bundle would
		// overlap with it.
		for name, b := range bundles {
			if b.Manifest.Roots == nil || slices.Contains(*b.Manifest.Roots, "") {
				carrier := *b
				carrier.Modules = append(slices.Clone(b.Modules), file)
				out[name] = &carrier
				return modules, out, nil
			}
		}
		roots := []string{"governor/contract"}
		out["governor-contract"] = &bundle.Bundle{Manifest: bundle.Manifest{Roots: &roots}, Modules: []bundle.ModuleFile{file}}
		return modules, out, nil
	}
	out := maps.Clone(modules)
	if out == nil {
		out = map[string]*ast.Module{}
	}
	out[contractlib.FileName] = lib
	return out, bundles, nil
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
	case opts.Coverage && opts.Format == "pretty":
		pretty := tester.PrettyReporter{Verbose: opts.Verbose, Output: opts.Output, FailureLine: opts.VarValues, LocalVars: opts.VarValues}
		return prettyCoverageReporter{pretty: pretty, cover: cov, modules: modules, threshold: opts.Threshold}, nil
	case opts.Coverage:
		return tester.JSONCoverageReporter{Cover: cov, Modules: modules, Output: opts.Output, Threshold: opts.Threshold, Verbose: opts.Verbose}, nil
	case opts.Format == "json":
		return tester.JSONReporter{Output: opts.Output}, nil
	case opts.Format == "" || opts.Format == "pretty":
		return tester.PrettyReporter{Verbose: opts.Verbose, Output: opts.Output, FailureLine: opts.VarValues, LocalVars: opts.VarValues}, nil
	}
	return nil, fmt.Errorf("unknown format %q (want pretty or json)", opts.Format)
}

// report counts the results while the reporter reports them, their traces filtered as
// opts asks, each first through check when there is one.
func report(opts TestOptions, reporter tester.Reporter, results <-chan *tester.Result, check func(*tester.Result)) (TestSummary, error) {
	var summary TestSummary
	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range results {
			if check != nil {
				check(r)
			}
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
			if opts.VarValues {
				return trace // the reporter finds the failing expression in it
			}
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

// prettyCoverageReporter reports tests as opa test's pretty reporter, then
// the coverage: each file's percentage and the lines not covered, and the
// overall percentage (opa eval --format pretty's "Overall Coverage").
type prettyCoverageReporter struct {
	pretty    tester.PrettyReporter
	cover     *cover.Cover
	modules   map[string]*ast.Module
	threshold float64
}

func (r prettyCoverageReporter) Report(ch chan *tester.Result) error {
	if err := r.pretty.Report(ch); err != nil {
		return err
	}
	report := r.cover.Report(r.modules)
	tw := tabwriter.NewWriter(r.pretty.Output, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "\nCOVERAGE\tFILE\tNOT COVERED")
	for _, name := range slices.Sorted(maps.Keys(report.Files)) {
		f := report.Files[name]
		var lines []string
		for _, rg := range f.NotCovered {
			if rg.Start.Row == rg.End.Row {
				lines = append(lines, strconv.Itoa(rg.Start.Row))
			} else {
				lines = append(lines, fmt.Sprintf("%d-%d", rg.Start.Row, rg.End.Row))
			}
		}
		_, _ = fmt.Fprintf(tw, "%.2f%%\t%s\t%s\n", f.Coverage, name, strings.Join(lines, ", "))
	}
	_, _ = fmt.Fprintf(tw, "%.2f%%\tOverall Coverage\t\n", report.Coverage)
	if err := tw.Flush(); err != nil {
		return err
	}
	if report.Coverage < r.threshold {
		return &cover.CoverageThresholdError{Coverage: report.Coverage, Threshold: r.threshold}
	}
	return nil
}
