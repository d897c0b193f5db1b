package main

import (
	"fmt"
	"runtime"

	opaversion "github.com/open-policy-agent/opa/v1/version"
	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of governor, its embedded OPA and Go",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "governor %s\nopa %s\ngo %s %s/%s\n",
				version, opaversion.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
