package main

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/spf13/cobra"

	"governor.dev/governor/decision/contractlib"
)

func newCheckCommand() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "check [--strict] PATH...",
		Short: "Parse and compile Rego files, as opa check does",
		Long: `Parse and compile every .rego file under each PATH together, with OPA's
compiler as opa check runs it (Rego v1; --strict adds its strict checks), and
print errors as OPA prints them: file, line, and the source with a caret
under the column. Tests may use the contract library
(data.governor.contract), which governor test provides.`,
		Example: `  governor check policies/
  governor check --strict policies/reactive`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			result, err := loader.NewFileLoader().
				WithRegoVersion(ast.RegoV1).
				WithProcessAnnotation(true).
				Filtered(args, func(_ string, info fs.FileInfo, _ int) bool {
					return !info.IsDir() && !strings.HasSuffix(info.Name(), ".rego")
				})
			if err != nil {
				return regoErrors(err)
			}
			modules := map[string]*ast.Module{}
			for name, m := range result.ParsedModules() {
				modules[name] = m
			}
			if len(modules) == 0 {
				return fmt.Errorf("no .rego files in %v", args)
			}
			checked := len(modules)
			if !contractlib.Carried(modules) {
				lib, err := contractlib.Module()
				if err != nil {
					return err
				}
				modules[contractlib.FileName] = lib
			}
			compiler := ast.NewCompiler().
				WithEnablePrintStatements(true).
				WithStrict(strict).
				WithUseTypeCheckAnnotations(true)
			if compiler.Compile(modules); compiler.Failed() {
				return regoErrors(compiler.Errors)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d module(s) checked\n", checked)
			return err
		},
	}
	cmd.Flags().BoolVarP(&strict, "strict", "S", false, "enable OPA's strict compiler checks")
	return cmd
}
