package main

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"governor.dev/governor/decision/contractlib"
)

// skeleton is what governor init writes: each file.tmpl becomes the file
// named in skeletonFiles.
//
//go:embed skeleton/*.tmpl
var skeleton embed.FS

var skeletonFiles = map[string]string{
	"manifest.tmpl":         ".manifest",
	"policy.rego.tmpl":      "policy.rego",
	"policy_test.rego.tmpl": "policy_test.rego",
	"loop.yaml.tmpl":        "loop.yaml",
	"trace.jsonl.tmpl":      "trace.jsonl",
	"expect.jsonl.tmpl":     "expect.jsonl",
}

// bundleName is a name that is both a Rego package and a Kubernetes name.
var bundleNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

func newInitCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Write a new policy bundle to start from",
		Long: `Write a bundle skeleton into the new directory NAME: a .manifest (revision
and roots), policy.rego (package NAME, a decision for every input), its tests
(which check the decision contract with the library in
governor/contract.rego, carried in the bundle), a sample loop.yaml, a short
trace.jsonl and the expect.jsonl it must meet. As written it passes:

  governor test NAME
  governor bundle check NAME --decision NAME/decision
  governor replay --bundle NAME=NAME --loop NAME/loop.yaml --trace NAME/trace.jsonl --expect NAME/expect.jsonl`,
		Example: `  governor init api`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			name := filepath.Base(dir)
			if !bundleNamePattern.MatchString(name) {
				return fmt.Errorf("bundle name %q: want lower-case letters, digits and _, starting with a letter (it is the Rego package)", name)
			}
			if _, err := os.Stat(dir); err == nil {
				return fmt.Errorf("%s exists: init writes a new directory", dir)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for tmpl, file := range skeletonFiles {
				t, err := template.ParseFS(skeleton, "skeleton/"+tmpl)
				if err != nil {
					return err
				}
				var b strings.Builder
				if err := t.Execute(&b, struct{ Name string }{name}); err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, file), []byte(b.String()), 0o644); err != nil {
					return err
				}
			}
			// The contract library its tests use, carried in the bundle so
			// that the activation gate can run them.
			if err := os.MkdirAll(filepath.Join(dir, "governor"), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "governor", "contract.rego"), []byte(contractlib.Source), 0o644); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), `wrote bundle %[1]s in %[2]s; try:
  governor test %[2]s
  governor bundle check %[2]s --decision %[1]s/decision
  governor replay --bundle %[1]s=%[2]s --loop %[2]s/loop.yaml --trace %[2]s/trace.jsonl --expect %[2]s/expect.jsonl
`, name, dir)
			return err
		},
	}
	return cmd
}
