package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"governor.dev/governor/bundles"
)

func newTestCommand() *cobra.Command {
	var opts bundles.TestOptions
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run the Rego tests of bundles, as opa test runs them",
		Long: `Run the Rego tests (rules named test_*) found under each PATH (default: the
current directory), with OPA's own test runner, configured as 'opa test'
configures it: both report the same results.

Without --bundle every .rego, .json and .yaml file under PATH is loaded; with
--bundle each PATH is a bundle directory or tarball and its .manifest roots
apply. data.governor.contract.valid(decision, input) and problems(decision,
input) are there for tests to assert that a decision meets the contract; with
--contract every rule named decision a test evaluates is checked on the
test's input, and a decision the controller would reject fails the test.
Exits 2 when a test fails or the coverage threshold is not met, 1 when
the tests cannot run at all, or when no test was found.`,
		Example: `  governor test policies/
  governor test -v --run 'cooldown' policies/bandwidth
  governor test --coverage --threshold 95 policies/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if len(opts.Paths) == 0 {
				opts.Paths = []string{"."}
			}
			opts.Output = cmd.OutOrStdout()
			if (opts.Coverage || opts.Threshold > 0) && !cmd.Flags().Changed("format") {
				opts.Format = "json" // opa test's coverage report, unless pretty is asked
			}
			summary, err := bundles.RunTests(cmd.Context(), opts)
			if err != nil {
				if summary.Passed+summary.Failed+summary.Errored > 0 {
					return &exitError{code: 2, err: err}
				}
				return regoErrors(err)
			}
			if !summary.OK() {
				if summary.Failed+summary.Errored > 0 {
					return &exitError{code: 2, err: fmt.Errorf("%d of %d tests failed", summary.Failed+summary.Errored, summary.Passed+summary.Failed+summary.Errored)}
				}
				return fmt.Errorf("no tests found in %v", opts.Paths)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.BundleMode, "bundle", "b", false, "load each path as a bundle")
	f.BoolVarP(&opts.Verbose, "verbose", "v", false, "report every test, with notes and failures traced")
	f.StringVar(&opts.Explain, "explain", "", "trace filter for -v: fails, full, notes or debug")
	f.BoolVarP(&opts.Coverage, "coverage", "c", false, "report coverage (JSON as opa test, or --format pretty: a table of files and lines not covered)")
	f.Float64Var(&opts.Threshold, "threshold", 0, "fail below this coverage percentage (implies --coverage)")
	f.StringVarP(&opts.Format, "format", "f", "pretty", "output format: pretty or json")
	f.StringVarP(&opts.Run, "run", "r", "", "run only tests whose names match this regular expression")
	f.BoolVar(&opts.VarValues, "var-values", false, "show the failing expression and its local variables' values")
	f.BoolVar(&opts.Contract, "contract", false, "fail a test when a rule named decision it evaluates breaks the decision contract on the test's input")
	f.DurationVarP(&opts.Timeout, "timeout", "t", 5*time.Second, "timeout for each test")
	return cmd
}
