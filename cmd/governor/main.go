// Command governor runs closed control loops whose decisions are Rego
// policies, and the tools that policy authors use with them.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// exitError carries an exit code other than 1 (governor test exits 2 when
// tests fail, as opa test does).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		// One line: scripts and CI logs read the reason at a glance.
		fmt.Fprintln(os.Stderr, "governor: "+strings.ReplaceAll(err.Error(), "\n", " "))
		var ee *exitError
		if errors.As(err, &ee) {
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
	root.AddCommand(newRunCommand(), newReplayCommand(), newEvalCommand(), newTestCommand(), newBundleCommand(), newVersionCommand(), newDemoCommand())
	return root
}
