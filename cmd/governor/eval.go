package main

import (
	"encoding/json"
	"io"
	"os"

	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/spf13/cobra"

	"governor.dev/governor/bundles"
)

func newEvalCommand() *cobra.Command {
	var bundleSrc, decision, inputFile, explain string
	var allow []string
	cmd := &cobra.Command{
		Use:   "eval --bundle SRC --decision PATH --input FILE|-",
		Short: "Make one decision and print it as JSON",
		Long: `Evaluate one decision of a bundle against an input document and print the
decision as JSON, after checking it against the decision contract.

Exits 1 with a one-line reason when the bundle does not load or compile, the
input is not a JSON object, or the decision breaks the contract (not an object,
an unknown target, a field of the wrong type).`,
		Example: `  governor eval --bundle policies/reactive --decision governor/reactive/decision --input input.json
  cat input.json | governor eval --bundle reactive.tar.gz --decision governor/reactive/decision --input - --explain=notes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := bundles.FilterTrace(explain, nil); err != nil {
				return err
			}
			input, err := readInputFile(inputFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := bundles.CheckAllowBuiltins(allow); err != nil {
				return err
			}
			rev, err := bundles.LoadWithOptions(cmd.Context(), bundleSrc, bundles.LoadOptions{Limits: bundles.Limits{AllowBuiltins: allow}})
			if err != nil {
				return err
			}
			req := bundles.Request{Decision: decision, Input: input}
			var trace *topdown.BufferTracer
			if explain != "" {
				trace = topdown.NewBufferTracer()
				req.Tracer = trace
			}
			res, err := rev.Decide(cmd.Context(), req)
			if trace != nil {
				// The trace goes to stderr, even for a rejected decision:
				// that is when it is wanted most.
				if terr := printTrace(cmd.ErrOrStderr(), explain, *trace); terr != nil {
					return terr
				}
			}
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(res.Raw)
		},
	}
	cmd.Flags().StringVar(&bundleSrc, "bundle", "", "bundle directory or .tar.gz")
	cmd.Flags().StringVar(&decision, "decision", "", "decision path, e.g. governor/reactive/decision")
	cmd.Flags().StringVar(&inputFile, "input", "", "input document: a JSON file, or - for stdin")
	cmd.Flags().StringVar(&explain, "explain", "", "print the evaluation trace to stderr: full, notes or fails")
	cmd.Flags().Lookup("explain").NoOptDefVal = "full"
	cmd.Flags().StringArrayVar(&allow, "allow-builtin", nil, "let the policy call this builtin that reaches outside the controller, as governor run --allow-builtin does (repeatable)")
	for _, f := range []string{"bundle", "decision", "input"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func readInputFile(name string, stdin io.Reader) (map[string]any, error) {
	if name == "-" {
		return bundles.ReadInput(stdin, "stdin")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, &bundles.InputError{Source: name, Reason: err.Error()}
	}
	defer func() { _ = f.Close() }() // only read: closing cannot lose anything
	return bundles.ReadInput(f, name)
}

func printTrace(w io.Writer, mode string, trace []*topdown.Event) error {
	filtered, err := bundles.FilterTrace(mode, trace)
	if err != nil {
		return err
	}
	topdown.PrettyTraceWithLocation(w, filtered)
	return nil
}
