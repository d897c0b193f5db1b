package bundles

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
)

// Status is a followed bundle's state, for status and metrics.
type Status struct {
	Name string
	// Source is where the bundle comes from (its URL).
	Source string
	// ActiveRevision is "name@revision" of the engine's active revision,
	// "" before the first.
	ActiveRevision string
	// ETag is that of the last bundle downloaded.
	ETag string
	// LastDownload is when the server last answered a poll (with a new
	// bundle or "not modified").
	LastDownload time.Time
	// LastActivation is when a downloaded revision last went live.
	LastActivation time.Time
	// LastError is the last download error (*DownloadError) or refusal
	// (*GateError); nil once a revision goes live, or once the server
	// answers again after a download error.
	LastError error
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time
	// Activations counts revisions activated, Refusals those refused (a
	// refused bundle fetched again while it stays on the server counts
	// once), DownloadErrors the polls that got no answer or an HTTP error.
	Activations, Refusals, DownloadErrors int
}

// DownloadError is a poll that failed: the server unreachable or an HTTP
// error. OPA's downloader retries with backoff.
type DownloadError struct {
	Bundle string
	Err    error
}

func (e *DownloadError) Error() string {
	return "downloading bundle " + e.Bundle + ": " + e.Err.Error()
}
func (e *DownloadError) Unwrap() error { return e.Err }

// Hooks connect a follower to the controller.
type Hooks struct {
	// Decisions lists the decision paths a new revision of the bundle must
	// prepare before it goes live: those of the loops deciding with it. It
	// may wait (for the API server) and fails only when ctx is done. Nil
	// prepares none.
	Decisions func(ctx context.Context, bundle string) ([]string, error)
	// Probes, if not nil, are the loops' last decisions on the bundle, for
	// the gate to make again with a new revision (see Checks.Probes). Like
	// Decisions, it may wait, and a failure holds the revision until it
	// answers.
	Probes func(ctx context.Context, bundle string) ([]Probe, error)
	// OnStatus, if not nil, is given every change of state. It must not
	// block for long.
	OnStatus func(Status)
	// Limits bound what a new revision may take (see Limits).
	Limits Limits
}

// HeldError is a downloaded revision waiting before the gate: the loops'
// decision paths or last decisions could not be listed yet. It is retried;
// nothing is refused.
type HeldError struct {
	Bundle, Revision string
	Err              error
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("bundle %s@%s held before the gate, retrying: %v", e.Bundle, e.Revision, e.Err)
}
func (e *HeldError) Unwrap() error { return e.Err }

// Follower keeps an engine on the newest revision of a source that passes
// the Gate. It may be run again after it stopped (a manager restarted in
// the same process): it goes on from what it knew.
type Follower struct {
	src    *Source
	engine *Engine
	hooks  Hooks

	mu     sync.Mutex
	status Status
	// activeETag is the ETag of the bundle that went live, refusedETag
	// that of the last refused one, refusal that refusal and refusedKey
	// what identifies it (its ETag, or its message when there is none).
	// OPA's downloader may fetch the same bundle again after an error: it
	// is neither activated nor counted twice.
	activeETag, refusedETag, refusedKey string
	refusal                             error
	refusedAt                           time.Time
}

// NewFollower is the follower of src, feeding engine.
func NewFollower(src *Source, engine *Engine, hooks Hooks) *Follower {
	f := &Follower{src: src, engine: engine, hooks: hooks}
	f.status.Name, f.status.Source = src.Name, src.URL
	return f
}

// Run follows until ctx is done. A downloaded source is polled by OPA's
// downloader (ETag / If-None-Match, long polling where the server supports
// it, backoff on errors, the service's credentials), each bundle bounded as
// a whole before the downloader reads it (see boundedClient); a file://
// source is read once.
func (f *Follower) Run(ctx context.Context) {
	if path := f.src.File(); path != "" {
		if f.engine.Active() == nil {
			f.readFile(ctx, path)
		}
		<-ctx.Done()
		return
	}
	client, err := boundedClient(f.src.client, f.src.keys, f.sizeLimit())
	if err != nil { // not expected: ParseConfig checked the credentials
		f.record(time.Now(), "", &DownloadError{Bundle: f.src.Name, Err: err})
		<-ctx.Done()
		return
	}
	d := download.New(f.src.Download, client, f.src.Resource).
		WithBundleName(f.src.Name).
		WithBundleVerificationConfig(f.src.Verification).
		WithSizeLimitBytes(f.sizeLimit()).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}).
		WithCallback(f.update)
	f.mu.Lock()
	d.SetCache(f.status.ETag) // what an earlier run downloaded last
	f.mu.Unlock()
	d.Start(ctx)
	<-ctx.Done()
	d.Stop(context.Background())
}

// Status is the bundle's status now.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// sizeLimit bounds each file of a bundle, and all of them together: the
// source's size_limit_bytes, at most the controller's limit.
func (f *Follower) sizeLimit() int64 {
	limit := f.hooks.Limits.OrDefaults().MaxBundleFileBytes
	if f.src.SizeLimitBytes > 0 {
		limit = min(limit, f.src.SizeLimitBytes)
	}
	return limit
}

// readFile puts a file:// bundle (a directory or tarball) through the gate.
func (f *Follower) readFile(ctx context.Context, path string) {
	b, err := readBundle(path, f.src.Name, f.src.URL, f.src.Verification, f.sizeLimit())
	if err != nil {
		step := StepRead
		var verr *VerificationError
		if errors.As(err, &verr) {
			step = StepVerify
		}
		f.record(time.Now(), "", &GateError{Bundle: f.src.Name, Step: step, Err: err})
		return
	}
	f.gate(ctx, time.Now(), "", b)
}

// update is the downloader's callback: a failed download, "not modified"
// (no bundle), or a bundle for the gate. A refusal is recorded, not
// returned: the download itself succeeded, and its ETag stays cached so the
// same refused bundle is not fetched again (until it changes).
func (f *Follower) update(ctx context.Context, u download.Update) error {
	now := time.Now()
	f.mu.Lock()
	refused, refusal := f.refusedETag, f.refusal
	f.mu.Unlock()
	active := f.engine.Active()
	switch {
	case ctx.Err() != nil: // stopping: what was cut short says nothing
	case u.Error != nil:
		f.record(now, "", f.downloadFailure(u.Error))
	case u.Bundle == nil: // not modified
		f.record(now, u.ETag, nil)
	case active != nil && u.Bundle.Manifest.Equal(active.Bundle().Manifest) && u.Bundle.Equal(*active.Bundle()):
		f.record(now, u.ETag, errStillActive)
	case u.ETag != "" && u.ETag == refused:
		f.record(now, u.ETag, refusal)
	case u.Bundle.Type() == bundle.DeltaBundleType:
		f.record(now, u.ETag, &GateError{Bundle: f.src.Name, Revision: u.Bundle.Manifest.Revision, Step: StepRead,
			Err: errors.New("delta bundles are not supported: serve whole (snapshot) bundles")})
	default:
		f.gate(ctx, now, u.ETag, u.Bundle)
	}
	return nil
}

// gate puts a downloaded bundle through the Gate. A bundle that declares
// entrypoints is checked on them (the Gate prepares each): which rules
// loops name does not matter, so no loop's typo or helper rule holds a
// revision back. For a bundle that declares none, the decision paths it
// must prepare are the loops' that the active revision serves: a revision
// may not drop a rule loops decide with, but a loop naming a rule no
// revision has (a typo, a rule not published yet) does not hold back every
// revision of its bundle. Either way it must make again the last decision
// of each loop (this replica's runners') on those paths.
func (f *Follower) gate(ctx context.Context, at time.Time, etag string, b *bundle.Bundle) {
	checks := Checks{Limits: f.hooks.Limits}
	declared, _ := entrypoints(b) // a bad declaration is refused at compile
	if active := f.engine.Active(); active != nil && f.hooks.Decisions != nil {
		if len(declared) == 0 {
			paths, ok := ask(ctx, f, b, f.hooks.Decisions)
			if !ok {
				return // ctx is done
			}
			for _, d := range paths {
				if _, err := active.Prepare(ctx, d); err == nil {
					checks.Decisions = append(checks.Decisions, d)
				}
			}
		}
		if f.hooks.Probes != nil {
			probes, ok := ask(ctx, f, b, f.hooks.Probes)
			if !ok {
				return
			}
			for _, p := range probes {
				if len(declared) > 0 || slices.Contains(checks.Decisions, p.Decision) {
					checks.Probes = append(checks.Probes, p)
				}
			}
		}
	}
	_, err := Gate(ctx, f.src.Name, f.src.URL, b, f.engine, checks)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errActivated
	}
	f.record(at, etag, err)
}

// ask asks a hook about the loops on the bundle (their decision paths,
// their last decisions) until it answers or ctx is done, showing why the
// revision waits meanwhile.
func ask[T any](ctx context.Context, f *Follower, b *bundle.Bundle, hook func(context.Context, string) ([]T, error)) ([]T, bool) {
	delay := time.Second
	for {
		answer, err := hook(ctx, f.src.Name)
		if err == nil {
			return answer, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		f.record(time.Now(), "", &HeldError{Bundle: f.src.Name, Revision: b.Manifest.Revision, Err: err})
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// Outcomes for record besides errors: a bundle that went live, and one
// downloaded again that is the active one.
var (
	errActivated   = errors.New("activated")
	errStillActive = errors.New("still active")
)

// record folds one outcome into the status: errActivated, errStillActive,
// a *GateError, a *HeldError, a *DownloadError, or nil for a poll answered
// "not modified" (etag: the ETag the server confirmed, if known). at is
// when the download came.
func (f *Follower) record(at time.Time, etag string, outcome error) {
	f.mu.Lock()
	s := &f.status
	var gate *GateError
	var held *HeldError
	switch {
	case errors.As(outcome, &gate):
		s.LastDownload, s.ETag = at, cmp.Or(etag, s.ETag)
		key := cmp.Or(etag, outcome.Error())
		if key != f.refusedKey {
			s.Refusals++
			refusals.WithLabelValues(s.Name, string(gate.Step)).Inc()
			f.refusedAt = at
		}
		f.refusedKey, f.refusedETag, f.refusal = key, etag, outcome
		s.LastError, s.LastErrorTime = outcome, f.refusedAt
	case errors.Is(outcome, errActivated):
		live := time.Now() // after the gate
		s.LastDownload, s.ETag = at, cmp.Or(etag, s.ETag)
		s.LastActivation = live
		s.Activations++
		f.activeETag = etag
		f.clearRefusal()
		activations.WithLabelValues(s.Name).Inc()
		lastActivation.WithLabelValues(s.Name).Set(float64(live.UnixNano()) / 1e9)
	case errors.Is(outcome, errStillActive):
		s.LastDownload, s.ETag = at, cmp.Or(etag, s.ETag)
		if etag != "" {
			f.activeETag = etag
		}
		f.clearRefusal()
	case errors.As(outcome, &held):
		s.LastError, s.LastErrorTime = outcome, at
	case outcome != nil:
		s.LastError, s.LastErrorTime = outcome, at
		s.DownloadErrors++
		downloadErrors.WithLabelValues(s.Name).Inc()
	default: // not modified: the server confirms etag, or what OPA last sent
		s.LastDownload = at
		confirmed := cmp.Or(etag, s.ETag)
		switch {
		case confirmed != "" && confirmed == f.activeETag:
			s.ETag = confirmed
			f.clearRefusal()
		case f.refusal != nil && confirmed != "" && confirmed == f.refusedETag:
			s.LastError, s.LastErrorTime = f.refusal, f.refusedAt
		case isDownloadError(s.LastError):
			s.LastError = nil
		}
	}
	if active := f.engine.Active(); active != nil {
		if s.ActiveRevision != active.String() {
			activeRevision.DeletePartialMatch(map[string]string{"bundle": s.Name})
			activeRevision.WithLabelValues(s.Name, active.Revision()).Set(1)
		}
		s.ActiveRevision = active.String()
	}
	snapshot := *s
	f.mu.Unlock()
	if f.hooks.OnStatus != nil {
		f.hooks.OnStatus(snapshot)
	}
}

// clearRefusal forgets the last refusal: the server serves the active
// bundle. f.mu is held.
func (f *Follower) clearRefusal() {
	f.refusedKey, f.refusedETag, f.refusal = "", "", nil
	f.status.LastError = nil
}

// downloadFailure tells a poll that got no bundle (the server unreachable,
// an HTTP error, a transfer cut short: a *DownloadError) from a bundle that
// came whole but could not be read, or was too large to be (a *GateError at
// StepVerify or StepRead).
// OPA's downloader reports both as its Update's error.
func (f *Follower) downloadFailure(err error) error {
	var tooLarge *tooLargeError
	if errors.As(err, &tooLarge) {
		return &GateError{Bundle: f.src.Name, Step: StepRead, Err: tooLarge}
	}
	var httpErr download.HTTPError
	var netErr net.Error
	if errors.As(err, &httpErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		strings.HasPrefix(err.Error(), "request failed") {
		return &DownloadError{Bundle: f.src.Name, Err: err}
	}
	var parse ast.Errors
	if f.src.Verification != nil && !errors.As(err, &parse) && isVerificationFailure(err) {
		return &GateError{Bundle: f.src.Name, Step: StepVerify, Err: &VerificationError{Bundle: f.src.Name, Source: f.src.URL, Reason: err.Error()}}
	}
	return &GateError{Bundle: f.src.Name, Step: StepRead, Err: err}
}

// isVerificationFailure is whether a bundle reader's error comes from
// signature verification. OPA returns these as plain errors; the phrases
// are those of its bundle/verify.go and bundle.go.
func isVerificationFailure(err error) bool {
	msg := err.Error()
	for _, phrase := range []string{"signature", "digest mismatch", "verification key", "verifier", "scope mismatch", "JWT"} {
		if strings.Contains(msg, phrase) {
			return true
		}
	}
	return false
}

func isDownloadError(err error) bool {
	var d *DownloadError
	return errors.As(err, &d)
}
