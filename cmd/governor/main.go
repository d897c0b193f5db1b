// Command governor runs closed control loops whose decisions are Rego
// policies, and the tools that policy authors use with them.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/spf13/cobra"
)

// exitError carries an exit code other than 1 (governor test exits 2 when
// tests fail, as opa test does).
type exitError struct {
	code int
	err  error
	// asOPA prints err as OPA prints it when it has details: its Rego
	// errors multi-line, the source line and a caret under the column.
	asOPA bool
}

// regoErrors marks the Rego parse and compile errors in err to be printed
// as OPA prints them; any other error is returned as it is.
func regoErrors(err error) error {
	var astErrs ast.Errors
	var loadErrs loader.Errors
	if errors.As(err, &astErrs) || errors.As(err, &loadErrs) {
		return &exitError{code: 1, err: err, asOPA: true}
	}
	return err
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		var ee *exitError
		switch {
		case errors.As(err, &ee) && ee.asOPA && strings.Contains(err.Error(), "\n"):
			fmt.Fprintln(os.Stderr, err.Error())
		default:
			// One line: scripts and CI logs read the reason at a glance.
			fmt.Fprintln(os.Stderr, "governor: "+strings.ReplaceAll(err.Error(), "\n", " "))
		}
		if ee != nil {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "governor",
		Short:         "Closed control loops for Kubernetes, decided by Rego policies",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newReplayCommand(), newEvalCommand(), newTestCommand(), newBundleCommand(), newVersionCommand(), newDemoCommand(),
		newFmtCommand(), newCheckCommand(), newInitCommand())
	return root
}
