package bundles

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// BuildOptions say how to build a bundle tarball.
type BuildOptions struct {
	Dir    string // the bundle directory, with its .manifest
	Output string // the .tar.gz to write
	// Revision overrides the manifest's revision; one of the two must be set.
	Revision string
	// Signing, when set, signs the tarball as `opa build --signing-key`
	// does (see NewSigningConfig): a .signatures.json whose JWT covers every
	// file, with KeyID (default "default") as its key id.
	Signing *bundle.SigningConfig
	KeyID   string
}

// Build compiles a bundle directory and writes it as a tarball, as
// `opa build -b` does. The output appears whole or not at all: it is written
// to a temporary file beside it and renamed. A signed tarball is read back
// and verified with the signing key's public half before it is renamed. It
// returns the built revision.
func Build(ctx context.Context, opts BuildOptions) (*Revision, error) {
	src, err := Load(ctx, opts.Dir)
	if err != nil {
		return nil, err
	}
	var verify *bundle.VerificationConfig
	keyID := opts.KeyID
	if opts.Signing != nil {
		if keyID == "" {
			keyID = DefaultKeyID
		}
		if verify, err = verificationFor(opts.Signing, keyID); err != nil {
			return nil, err
		}
	}
	if opts.Revision == "" && src.Revision() == "" {
		return nil, fmt.Errorf("bundle %s has no revision: set \"revision\" in its .manifest or pass --revision", opts.Dir)
	}
	tmp, err := os.CreateTemp(filepath.Dir(opts.Output), "."+filepath.Base(opts.Output)+".*")
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", opts.Output, err)
	}
	// Once renamed there is nothing to remove, and the error says so.
	defer func() { _ = os.Remove(tmp.Name()) }()
	c := compile.New().
		WithAsBundle(true).
		WithRegoVersion(ast.RegoV1).
		WithPaths(opts.Dir).
		WithOutput(tmp)
	if opts.Revision != "" {
		c = c.WithRevision(opts.Revision)
	}
	if opts.Signing != nil {
		c = c.WithBundleSigningConfig(opts.Signing).WithBundleVerificationKeyID(keyID)
	}
	buildErr := c.Build(ctx)
	if err := tmp.Close(); err != nil && buildErr == nil {
		buildErr = err
	}
	if buildErr != nil {
		return nil, fmt.Errorf("building %s: %w", opts.Dir, buildErr)
	}
	// Read back what was written: the tarball is what servers and the
	// controller will load, so it must load. Which builtins it may call is
	// the controller's to say (governor run --allow-builtin), not the build's.
	built, err := loadVerified(ctx, tmp.Name(), bundleName(opts.Output), opts.Output, verify, Limits{AllowBuiltins: OutsideBuiltins()})
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), opts.Output); err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", opts.Output, err)
	}
	return built, nil
}
