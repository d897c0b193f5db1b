package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/spf13/cobra"

	"governor.dev/governor/bundles"
)

func newBundleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Work with policy bundles",
	}
	cmd.AddCommand(newBundleBuildCommand(), newBundleCheckCommand(), newBundleVerifyCommand())
	return cmd
}

func newBundleBuildCommand() *cobra.Command {
	var opts bundles.BuildOptions
	var signingKey, signingAlg string
	var gate gateOptions
	var skipGate bool
	cmd := &cobra.Command{
		Use:   "build DIR -o FILE [--revision R] [--signing-key KEY [--signing-alg ALG] [--key-id ID]] [--skip-gate]",
		Short: "Compile a bundle directory into a .tar.gz with its revision",
		Long: `Compile a bundle directory (its .manifest gives revision and roots) and write
it as a gzipped tarball that the controller and OPA load. The tarball is
written whole or not at all; a bundle that does not compile writes nothing.
First it runs the activation gate as 'governor bundle check' does (its own
tests, the --decision paths), and refuses to pack a bundle that fails it
unless --skip-gate.

With --signing-key (a PEM private key, or the secret for HS256/384/512) the
tarball is signed as 'opa build --signing-key' signs it: a .signatures.json
whose JWT covers every file, with key id --key-id. OPA and 'governor bundle
verify' verify it with the matching public key.`,
		Example: `  governor bundle build policies/reactive -o reactive.tar.gz --revision reactive-4
  governor bundle build policies/reactive -o reactive.tar.gz --signing-key private.pem`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			if !skipGate {
				if _, err := gate.check(cmd, opts.Dir); err != nil {
					return fmt.Errorf("%w (--skip-gate packs it all the same)", err)
				}
			}
			if signingKey == "" && (cmd.Flags().Changed("signing-alg") || cmd.Flags().Changed("key-id")) {
				return fmt.Errorf("--signing-alg and --key-id need --signing-key")
			}
			if signingKey != "" {
				if err := checkKeyFile("signing key", signingKey, signingAlg); err != nil {
					return err
				}
				sc, err := bundles.NewSigningConfig(signingKey, signingAlg)
				if err != nil {
					return err
				}
				opts.Signing = sc
			}
			rev, err := bundles.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			info, err := os.Stat(opts.Output)
			if err != nil {
				return err
			}
			signed := ""
			if opts.Signing != nil {
				keyID := opts.KeyID
				if keyID == "" {
					keyID = bundles.DefaultKeyID
				}
				signed = fmt.Sprintf(", signed (%s, key id %s)", opts.Signing.Algorithm, keyID)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "built %s from %s: %d modules, roots %v, %d bytes%s -> %s\n",
				rev, opts.Dir, len(rev.Bundle().Modules), rev.Roots(), info.Size(), signed, opts.Output)
			return err
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "the .tar.gz to write")
	cmd.Flags().StringVar(&opts.Revision, "revision", "", "revision to stamp (default: the manifest's)")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "sign with this private key (PEM file or PEM; the secret for HS*)")
	cmd.Flags().StringVar(&signingAlg, "signing-alg", "RS256", "signing algorithm (RS256/384/512, PS*, ES256/384/512, HS256/384/512)")
	cmd.Flags().StringVar(&opts.KeyID, "key-id", bundles.DefaultKeyID, "key id recorded in the signature")
	cmd.Flags().BoolVar(&skipGate, "skip-gate", false, "pack the bundle even if it fails the activation gate")
	gate.flags(cmd)
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func newBundleVerifyCommand() *cobra.Command {
	var key, alg, keyID string
	cmd := &cobra.Command{
		Use:   "verify FILE [--verification-key KEY [--verification-alg ALG] [--key-id ID]]",
		Short: "Verify a bundle's signature and check that it compiles",
		Long: `Verify a bundle's .signatures.json with a public key (or the secret for
HS256/384/512), as OPA does before activating a signed bundle, then compile
it. Exit 0 if it verifies and compiles; exit 1 with a one-line reason if it
is unsigned, its signature is bad or by another key, or a file was changed
after signing. Without --verification-key it checks that an unsigned bundle
compiles, and says that it is unsigned.`,
		Example: `  governor bundle verify reactive.tar.gz --verification-key public.pem
  governor bundle verify reactive.tar.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// An unsigned bundle is told as such, not as a failed verification.
			signed, err := hasSignatures(args[0])
			if err != nil {
				return err
			}
			switch {
			case key == "" && !signed:
				plain, err := bundles.Load(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s from %s: %d modules, compiles; unsigned (no .signatures.json)\n",
					plain, args[0], len(plain.Bundle().Modules))
				return err
			case key == "":
				return fmt.Errorf("%s is signed: give --verification-key to verify its signature", args[0])
			case !signed:
				return fmt.Errorf("%s is unsigned (no .signatures.json): sign it with 'governor bundle build --signing-key', or drop --verification-key to only check that it compiles", args[0])
			}
			if err := checkKeyFile("verification key", key, alg); err != nil {
				return err
			}
			vc, err := bundles.NewVerificationConfig(key, alg, keyID)
			if err != nil {
				return err
			}
			rev, err := bundles.LoadVerified(cmd.Context(), args[0], vc)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "verified %s from %s: %d modules, signature verified with key id %s (%s)\n",
				rev, args[0], len(rev.Bundle().Modules), vc.KeyID, alg)
			return err
		},
	}
	cmd.Flags().StringVar(&key, "verification-key", "", "public key (PEM file or PEM; the secret for HS*)")
	cmd.Flags().StringVar(&alg, "verification-alg", "RS256", "signature algorithm the key is for")
	cmd.Flags().StringVar(&keyID, "key-id", bundles.DefaultKeyID, "key id of the verification key")
	return cmd
}

func newBundleCheckCommand() *cobra.Command {
	var gate gateOptions
	cmd := &cobra.Command{
		Use:   "check DIR|FILE [--decision PATH...] [--allow-builtin NAME...]",
		Short: "Run the activation gate on a bundle, as the controller would",
		Long: `Put a bundle directory or tarball through the activation gate that every new
revision passes before the controller activates it: read it, compile it
within the builtins the controller allows, run its own Rego tests, prepare
each --decision path. Prints what passed, or exits 2 with the step that
refused it and why (1 when it cannot run at all).`,
		Example: `  governor bundle check policies/reactive --decision governor/reactive/decision
  governor bundle check reactive.tar.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rev, err := gate.check(cmd, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "pass: %s from %s: compiled, its tests passed, %d decision path(s) prepared\n",
				rev, args[0], len(gate.decisions))
			return err
		},
	}
	gate.flags(cmd)
	return cmd
}

// gateOptions are the checks of bundle check and bundle build's gate.
type gateOptions struct {
	decisions     []string
	allowBuiltins []string
}

func (g *gateOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&g.decisions, "decision", nil, "a decision path loops decide with, which the bundle must prepare (repeatable)")
	cmd.Flags().StringSliceVar(&g.allowBuiltins, "allow-builtin", nil, "builtins reaching outside the controller that policies may call, as governor run --allow-builtin")
}

// check runs the gate; a refusal exits 2.
func (g *gateOptions) check(cmd *cobra.Command, path string) (*bundles.Revision, error) {
	rev, err := bundles.CheckBundle(cmd.Context(), path, g.decisions, bundles.Limits{AllowBuiltins: g.allowBuiltins})
	var ge *bundles.GateError
	if errors.As(err, &ge) {
		return nil, &exitError{code: 2, err: err}
	}
	return rev, err
}

// checkKeyFile checks an RSA or ECDSA key flag before OPA reads it. OPA takes
// a value that is neither PEM nor an existing file to be the key itself,
// which is right for an HMAC secret but for RSA and ECDSA means a mistyped
// path, and reports it as "failed to parse PEM block containing the key";
// on verify that read as if the bundle had failed verification.
func checkKeyFile(what, key, alg string) error {
	if key == "" || strings.HasPrefix(alg, "HS") || strings.HasPrefix(key, "-----BEGIN") {
		return nil
	}
	data, err := os.ReadFile(key)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if block, _ := pem.Decode(data); block == nil {
		return fmt.Errorf("%s %s: no PEM key in it", what, key)
	}
	return nil
}

// hasSignatures says whether the bundle directory or tarball at path holds a
// .signatures.json, listing its files with OPA's bundle loaders.
func hasSignatures(path string) (bool, error) {
	info, err := os.Stat(path)
	if err != nil {
		return false, fmt.Errorf("cannot load bundle %s: %w", path, err)
	}
	var loader bundle.DirectoryLoader
	if info.IsDir() {
		loader = bundle.NewDirectoryLoader(path)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return false, err
		}
		defer func() { _ = f.Close() }() // only read: closing cannot lose anything
		loader = bundle.NewTarballLoaderWithBaseURL(f, "")
	}
	for {
		d, err := loader.NextFile()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("cannot load bundle %s: %w", path, err)
		}
		if filepath.Base(d.Path()) == ".signatures.json" {
			return true, nil
		}
	}
}
