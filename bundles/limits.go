package bundles

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"governor.dev/governor/decision"
)

// Limits bound what a bundle and its decisions may take from the
// controller: the builtins its policies may call, the size of its files,
// the time of a decision and the size of its output; and whether bundles
// may come unsigned or over plain HTTP. The zero value is the defaults
// (neither).
type Limits struct {
	// AllowBuiltins are builtins that reach outside the controller
	// (OutsideBuiltins) that policies may call all the same.
	AllowBuiltins []string
	// MaxBundleFileBytes bounds each file of a bundle, uncompressed,
	// checked while it is read (OPA's size_limit_bytes): a gzip bomb stops
	// there. It bounds a whole bundle too (the sum of its files), and a
	// downloaded bundle's transfer (compressed). A bundle source's own
	// size_limit_bytes applies when smaller.
	MaxBundleFileBytes int64
	// MaxDecisionTimeout caps a loop's spec.policy.timeout.
	MaxDecisionTimeout time.Duration
	// DecisionLogBufferBytes bounds the decision log's buffer while its
	// service does not take uploads (OPA's buffer_size_limit_bytes): the
	// oldest decisions are dropped beyond it.
	DecisionLogBufferBytes int64
	// Output bounds each decision's output.
	Output decision.Limits
	// AllowUnsignedBundles lets a bundle be followed on a bundle server
	// with no key to verify it (governor run --allow-unsigned-bundles).
	// Without it, such a configuration is refused.
	AllowUnsignedBundles bool
	// AllowInsecureServices lets an OPA configuration's services be
	// reached without TLS (--allow-insecure-bundle-services). Without it,
	// a service whose URL is not https:// is refused.
	AllowInsecureServices bool
}

// The defaults of Limits.
const (
	DefaultMaxBundleFileBytes     = 32 << 20
	DefaultDecisionTimeout        = time.Second
	DefaultMaxDecisionTimeout     = 10 * time.Second
	DefaultDecisionLogBufferBytes = 16 << 20
)

// OrDefaults is l with each unset limit at its default.
func (l Limits) OrDefaults() Limits {
	if l.MaxBundleFileBytes <= 0 {
		l.MaxBundleFileBytes = DefaultMaxBundleFileBytes
	}
	if l.MaxDecisionTimeout <= 0 {
		l.MaxDecisionTimeout = DefaultMaxDecisionTimeout
	}
	if l.DecisionLogBufferBytes <= 0 {
		l.DecisionLogBufferBytes = DefaultDecisionLogBufferBytes
	}
	l.Output = l.Output.OrDefaults()
	return l
}

// DecisionTimeout is the time limit of a decision that asks for timeout
// (a loop's spec.policy.timeout; zero for the default), capped.
func (l Limits) DecisionTimeout(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = DefaultDecisionTimeout
	}
	return min(timeout, l.OrDefaults().MaxDecisionTimeout)
}

// insideBuiltins are the builtins OPA marks non-deterministic that stay
// inside the controller: the clock, randomness, and JWT signing and
// verification (non-deterministic through the clock and nonces). Every
// other non-deterministic builtin reaches the network or the process's
// environment (http.send, net.lookup_ip_addr, opa.runtime, JSON schemas
// with remote references): OutsideBuiltins.
var insideBuiltins = []string{
	"time.now_ns", "rand.intn", "uuid.rfc4122",
	"io.jwt.decode_verify", "io.jwt.encode_sign", "io.jwt.encode_sign_raw",
}

// OutsideBuiltins are the builtins of this OPA that reach outside the
// controller, sorted: those OPA marks non-deterministic, but for the clock,
// randomness and JWTs. A builtin OPA adds later is refused by default.
func OutsideBuiltins() []string {
	var out []string
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		if b.Nondeterministic && !slices.Contains(insideBuiltins, b.Name) {
			out = append(out, b.Name)
		}
	}
	slices.Sort(out)
	return out
}

// CheckAllowBuiltins refuses a name in allow that is not a builtin the
// controller refuses (a typo would otherwise allow nothing, silently).
func CheckAllowBuiltins(allow []string) error {
	outside := OutsideBuiltins()
	for _, name := range allow {
		if !slices.Contains(outside, name) {
			return fmt.Errorf("--allow-builtin %s: not a builtin governor refuses (those are: %s)", name, strings.Join(outside, ", "))
		}
	}
	return nil
}

// capabilities are this OPA's, without the builtins that reach outside
// the controller that l does not allow: a policy calling one does not
// compile.
func (l Limits) capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	refused := l.refusedBuiltins()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool { return slices.Contains(refused, b.Name) })
	return caps
}

// refusedBuiltins are the outside builtins l does not allow.
func (l Limits) refusedBuiltins() []string {
	return slices.DeleteFunc(OutsideBuiltins(), func(name string) bool { return slices.Contains(l.AllowBuiltins, name) })
}

// explainRefusedBuiltins rewrites the compiler's "undefined function X" for
// a builtin the capabilities left out into why it is refused.
func (l Limits) explainRefusedBuiltins(ce *CompileError) {
	refused := l.refusedBuiltins()
	for i, p := range ce.Problems {
		name, ok := strings.CutPrefix(p.Message, "undefined function ")
		if ok && slices.Contains(refused, name) {
			ce.Problems[i].Code = "builtin_refused"
			ce.Problems[i].Message = fmt.Sprintf("%s reaches outside the controller and is refused (governor run --allow-builtin %s allows it)", name, name)
		}
	}
}

// totalSize bounds the sum of a bundle's files, uncompressed, while OPA's
// loaders read them: OPA's size limit is per file, so a bundle of many
// files each under it could take their sum. The loaders announce each file
// with its size (through their filter) before reading it; past the limit
// the rest is skipped, the tarball's stream stops, and the read fails.
type totalSize struct {
	limit, sum int64
	root       string // the directory read, left out of file names
	over       string // the file that took the sum past the limit
}

// skip is the loaders' filter: it counts each file, skipping it and
// every one after once the sum is past the limit. A file over the limit
// by itself is left to OPA's own, per-file message.
func (t *totalSize) skip(path string, info fs.FileInfo, _ int) bool {
	switch {
	case info.IsDir():
		return false
	case t.over != "":
		return true
	case info.Size() > t.limit:
		return false
	}
	t.sum += info.Size()
	if t.sum > t.limit {
		t.over = path
		return true
	}
	return false
}

func (t *totalSize) err() error {
	return fmt.Errorf("bundle files total more than %d bytes (the size limit of a whole bundle) with %s", t.limit, strings.TrimPrefix(strings.TrimPrefix(t.over, t.root), "/"))
}

// stopping is a tarball's stream that fails once the sum is past the
// limit, so the rest of a gzip bomb is not even inflated.
func (t *totalSize) stopping(r io.Reader) io.Reader { return &stoppingReader{r: r, t: t} }

type stoppingReader struct {
	r io.Reader
	t *totalSize
}

func (s *stoppingReader) Read(p []byte) (int, error) {
	if s.t.over != "" {
		return 0, errors.New("stopped: over the size limit")
	}
	return s.r.Read(p)
}

// loader counts dl's files and fails once they total more than the limit.
func (t *totalSize) loader(dl bundle.DirectoryLoader) bundle.DirectoryLoader {
	return &totalLoader{DirectoryLoader: dl.WithFilter(t.skip), t: t}
}

type totalLoader struct {
	bundle.DirectoryLoader
	t *totalSize
}

// NextFile fails once the files total more than the limit: OPA's loaders
// list (a directory) or read (a tarball) every file at the first call.
func (l *totalLoader) NextFile() (*bundle.Descriptor, error) {
	d, err := l.DirectoryLoader.NextFile()
	if l.t.over != "" {
		if d != nil {
			_ = d.Close() // never read
		}
		return nil, l.t.err()
	}
	return d, err
}
