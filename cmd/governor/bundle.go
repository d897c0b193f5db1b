package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"governor.dev/governor/bundles"
)

func newBundleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Work with policy bundles",
	}
	cmd.AddCommand(newBundleBuildCommand())
	return cmd
}

func newBundleBuildCommand() *cobra.Command {
	var opts bundles.BuildOptions
	cmd := &cobra.Command{
		Use:   "build DIR -o FILE [--revision R]",
		Short: "Compile a bundle directory into a .tar.gz with its revision",
		Long: `Compile a bundle directory (its .manifest gives revision and roots) and write
it as a gzipped tarball that the controller and OPA load. The tarball is
written whole or not at all; a bundle that does not compile writes nothing.`,
		Example: `  governor bundle build policies/reactive -o reactive.tar.gz --revision reactive-2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			rev, err := bundles.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			info, err := os.Stat(opts.Output)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "built %s from %s: %d modules, roots %v, %d bytes -> %s\n",
				rev, opts.Dir, len(rev.Bundle().Modules), rev.Roots(), info.Size(), opts.Output)
			return err
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "the .tar.gz to write")
	cmd.Flags().StringVar(&opts.Revision, "revision", "", "revision to stamp (default: the manifest's)")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}
