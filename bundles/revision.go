package bundles

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Revision is one bundle at one revision, compiled once. It never changes
// after Load: a new revision is a new Revision, swapped in whole by an Engine.
// It is safe for concurrent use.
type Revision struct {
	name     string
	revision string
	roots    []string
	// entrypoints are the decision paths the bundle declares, as data
	// references, sorted (see entrypoints); none: any rule may be decided.
	entrypoints []string
	source      string
	bundle      *bundle.Bundle
	compiler    *ast.Compiler
	store       storage.Store

	mu      sync.Mutex
	queries map[string]*preparedQuery
}

type preparedQuery struct {
	once  sync.Once
	query rego.PreparedEvalQuery
	// reads is the part of the input the decision reads; it is evaluated
	// on that part alone.
	reads inputReads
	err   error
}

// Load reads a bundle from a directory or a .tar.gz file with OPA's bundle
// reader (Rego v1 unless the manifest says otherwise), then activates it into
// a store of its own and compiles it, as OPA does, within the default Limits.
func Load(ctx context.Context, src string) (*Revision, error) {
	return loadVerified(ctx, src, bundleName(src), src, nil, Limits{})
}

// loadVerified reads the bundle at path, naming it name and reporting it as
// source, and compiles it within lim. When vc is not nil, it verifies the
// bundle's signature with OPA's bundle reader. A bundle that reads without
// verification but not with it is refused with a *VerificationError; one
// that does not read at all is a *LoadError or *CompileError as without vc.
func loadVerified(ctx context.Context, path, name, source string, vc *bundle.VerificationConfig, lim Limits) (*Revision, error) {
	b, err := readBundle(path, name, source, vc, lim.OrDefaults().MaxBundleFileBytes)
	if err != nil {
		return nil, err
	}
	return compileBundle(ctx, name, source, b, lim)
}

// readBundle reads a bundle directory or tarball with OPA's bundle reader,
// each file at most sizeLimit bytes (checked while reading, so a gzip bomb
// stops there), verifying it with vc when vc is not nil. A bundle that
// reads without verification but not with it is a *VerificationError; one
// that does not read at all is a *LoadError or *CompileError.
func readBundle(path, name, source string, vc *bundle.VerificationConfig, sizeLimit int64) (*bundle.Bundle, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, &LoadError{Source: source, Err: err}
	}
	read := func(vc *bundle.VerificationConfig, skip bool) (*bundle.Bundle, error) {
		return readLimited(path, sizeLimit, func(r *bundle.Reader) *bundle.Reader {
			return r.WithBundleVerificationConfig(vc).WithSkipBundleVerification(skip)
		})
	}
	b, err := read(vc, false)
	if err != nil && vc != nil {
		if _, uerr := read(nil, true); uerr == nil {
			return nil, &VerificationError{Bundle: name, Source: source, Reason: trimBundlePrefix(err, path)}
		} else {
			err = uerr
		}
	}
	if err != nil {
		var parseErrs ast.Errors
		if errors.As(err, &parseErrs) {
			return nil, newCompileError(name, source, parseErrs)
		}
		return nil, &LoadError{Source: source, Err: errors.New(trimBundlePrefix(err, path))}
	}
	return b, nil
}

// readLimited is OPA's loader.AsBundle (a directory, or a tarball) with a
// size limit on every file and on all of them together, which AsBundle
// does not offer.
func readLimited(path string, sizeLimit int64, with func(*bundle.Reader) *bundle.Reader) (*bundle.Bundle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	total := &totalSize{limit: sizeLimit}
	var dl bundle.DirectoryLoader
	if fi.IsDir() {
		dl, total.root = bundle.NewDirectoryLoader(path), filepath.ToSlash(filepath.Clean(path))
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }() // read only: nothing to lose
		dl = bundle.NewTarballLoaderWithBaseURL(total.stopping(f), path)
	}
	dl = total.loader(dl.WithSizeLimitBytes(sizeLimit))
	r := bundle.NewCustomReader(dl).
		WithSizeLimitBytes(sizeLimit).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithBundleName(path)
	if fi.IsDir() {
		r = r.WithBaseDir(path) // module names carry the directory, as OPA's loader does
	}
	b, err := with(r).Read()
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return &b, nil
}

// FromBundle compiles an already-read bundle within the default Limits.
// name identifies the bundle (for example "reactive"); source says where it
// came from, for messages.
func FromBundle(ctx context.Context, name, source string, b *bundle.Bundle) (*Revision, error) {
	return compileBundle(ctx, name, source, b, Limits{})
}

// compileBundle compiles an already-read bundle with the capabilities lim
// allows: a call of a builtin that reaches outside the controller, not
// allowed, is a *CompileError naming it, its file and its line.
func compileBundle(ctx context.Context, name, source string, b *bundle.Bundle, lim Limits) (*Revision, error) {
	if len(b.Modules) == 0 {
		return nil, &LoadError{Source: source, Err: errors.New("bundle holds no Rego modules")}
	}
	eps, err := entrypoints(b)
	if err != nil {
		return nil, &LoadError{Source: source, Err: err}
	}
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	compiler := ast.NewCompiler().WithEnablePrintStatements(false).WithCapabilities(lim.capabilities())
	err = storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		return bundle.Activate(&bundle.ActivateOpts{
			Ctx:      ctx,
			Store:    store,
			Txn:      txn,
			Compiler: compiler,
			Metrics:  metrics.New(),
			Bundles:  map[string]*bundle.Bundle{name: b},
		})
	})
	if err != nil {
		var astErrs ast.Errors
		if errors.As(err, &astErrs) {
			ce := newCompileError(name, source, astErrs)
			lim.explainRefusedBuiltins(ce)
			return nil, ce
		}
		return nil, &LoadError{Source: source, Err: err}
	}
	var roots []string
	if b.Manifest.Roots != nil {
		roots = *b.Manifest.Roots
	}
	return &Revision{
		name:        name,
		revision:    b.Manifest.Revision,
		roots:       roots,
		entrypoints: eps,
		source:      source,
		bundle:      b,
		compiler:    compiler,
		store:       store,
		queries:     map[string]*preparedQuery{},
	}, nil
}

// Name is the bundle's name.
func (r *Revision) Name() string { return r.name }

// Revision is the manifest's revision string ("" if the bundle has none).
func (r *Revision) Revision() string { return r.revision }

// Roots are the manifest's roots.
func (r *Revision) Roots() []string { return r.roots }

// Bundle is the bundle as read; callers must not modify it.
func (r *Revision) Bundle() *bundle.Bundle { return r.bundle }

// String is "name@revision", as status.policyRevision shows it.
func (r *Revision) String() string {
	rev := r.revision
	if rev == "" {
		rev = "unversioned"
	}
	return r.name + "@" + rev
}

// Prepare compiles the query for a decision path once per revision; later
// calls return the same prepared query.
func (r *Revision) Prepare(ctx context.Context, decision string) (rego.PreparedEvalQuery, error) {
	pq, err := r.prepare(ctx, decision)
	if err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	return pq.query, nil
}

func (r *Revision) prepare(ctx context.Context, decision string) (*preparedQuery, error) {
	ref, err := DecisionRef(decision)
	if err != nil {
		return nil, err
	}
	key := ref.String()
	r.mu.Lock()
	pq, ok := r.queries[key]
	if !ok {
		pq = &preparedQuery{}
		r.queries[key] = pq
	}
	r.mu.Unlock()
	pq.once.Do(func() {
		rules := r.compiler.GetRules(ref)
		if len(rules) == 0 || isPackage(r.compiler, ref) {
			pq.err = &UndefinedDecisionError{Decision: decision, Revision: r.String(), Reason: undefinedReason(r.compiler, ref)}
			return
		}
		pq.query, pq.err = rego.New(
			rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
			rego.Compiler(r.compiler),
			rego.Store(r.store),
		).PrepareForEval(ctx)
		pq.reads = readsOf(r.compiler.Graph, rules)
	})
	if pq.err != nil {
		return nil, pq.err
	}
	return pq, nil
}

// DecisionRef turns a decision path ("governor/reactive/decision", or the
// dotted "data.governor.reactive.decision") into a data reference.
func DecisionRef(decision string) (ast.Ref, error) {
	if strings.TrimSpace(decision) == "" {
		return nil, &UndefinedDecisionError{Decision: `""`, Reason: "no decision path given (want a path like governor/reactive/decision)"}
	}
	path := strings.TrimPrefix(strings.TrimPrefix(decision, "data."), "data/")
	sep := "/"
	if !strings.Contains(path, "/") {
		sep = "."
	}
	parts := strings.Split(strings.Trim(path, sep), sep)
	ref := ast.Ref{ast.DefaultRootDocument}
	for _, p := range parts {
		if !ast.IsVarCompatibleString(p) || ast.IsKeyword(p) {
			return nil, &UndefinedDecisionError{Decision: decision, Reason: fmt.Sprintf("%q is not a valid path segment (want a path like governor/reactive/decision)", p)}
		}
		ref = append(ref, ast.StringTerm(p))
	}
	return ref, nil
}

// trimBundlePrefix drops the loader's "bundle PATH: " prefix, which the
// errors of this package say already.
func trimBundlePrefix(err error, path string) string {
	return strings.TrimPrefix(err.Error(), "bundle "+path+": ")
}

// bundleName is a source's file or directory name without .tar.gz.
func bundleName(src string) string {
	base := filepath.Base(filepath.Clean(src))
	for _, ext := range []string{".tar.gz", ".tgz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return base
}
