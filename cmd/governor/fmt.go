package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/format"
	"github.com/spf13/cobra"
)

func newFmtCommand() *cobra.Command {
	var write, list, fail bool
	cmd := &cobra.Command{
		Use:   "fmt [-w | -l] [--fail] PATH...",
		Short: "Format Rego files, as opa fmt does",
		Long: `Format the .rego files under each PATH with OPA's formatter (opa fmt's,
Rego v1). Prints the formatted source, or with -w rewrites each file that
changes, or with -l lists them. --fail exits 2 when a file is not formatted
(for CI). A file that does not parse is reported as OPA reports it.`,
		Example: `  governor fmt -w policies/
  governor fmt -l --fail policies/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if write && list {
				return fmt.Errorf("-w and -l do not go together")
			}
			files, err := regoFiles(args)
			if err != nil {
				return err
			}
			var changed []string
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				out, err := format.Source(f, src)
				if err != nil {
					return regoErrors(err)
				}
				differs := !bytes.Equal(src, out)
				if differs {
					changed = append(changed, f)
				}
				switch {
				case list && differs:
					_, err = fmt.Fprintln(cmd.OutOrStdout(), f)
				case write && differs:
					err = writeKeepingMode(f, out)
				case !list && !write:
					_, err = cmd.OutOrStdout().Write(out)
				}
				if err != nil {
					return err
				}
			}
			if fail && len(changed) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("%d file(s) not formatted: %s", len(changed), strings.Join(changed, ", "))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&write, "write", "w", false, "rewrite the files that change")
	cmd.Flags().BoolVarP(&list, "list", "l", false, "list the files that are not formatted")
	cmd.Flags().BoolVar(&fail, "fail", false, "exit 2 when a file is not formatted")
	return cmd
}

// regoFiles are the .rego files under paths, in walk order.
func regoFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".rego") {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .rego files in %s", strings.Join(paths, ", "))
	}
	return files, nil
}

func writeKeepingMode(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, info.Mode().Perm())
}
