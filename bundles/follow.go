package bundles

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
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

// Follow keeps engine on the newest revision of src that passes the Gate,
// until ctx is done. A downloaded source is polled by OPA's downloader (ETag
// / If-None-Match, long polling where the server supports it, backoff on
// errors, the service's credentials); a file:// source is read once. Every
// change of state is reported to onStatus (if not nil), which must not block
// for long.
func Follow(ctx context.Context, src *Source, engine *Engine, onStatus func(Status)) {
	f := &follower{src: src, engine: engine, onStatus: onStatus}
	f.status.Name, f.status.Source = src.Name, src.URL
	if path := src.File(); path != "" {
		f.readFile(ctx, path)
		<-ctx.Done()
		return
	}
	d := download.New(src.Download, src.client, src.Resource).
		WithBundleName(src.Name).
		WithBundleVerificationConfig(src.Verification).
		WithSizeLimitBytes(src.SizeLimitBytes).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}).
		WithCallback(f.update)
	d.Start(ctx)
	<-ctx.Done()
	d.Stop(context.Background())
}

type follower struct {
	src      *Source
	engine   *Engine
	onStatus func(Status)

	mu     sync.Mutex
	status Status
}

// readFile puts a file:// bundle (a directory or tarball) through the gate.
func (f *follower) readFile(ctx context.Context, path string) {
	b, err := readBundle(path, f.src.Name, f.src.URL, f.src.Verification)
	if err != nil {
		step := StepRead
		var verr *VerificationError
		if errors.As(err, &verr) {
			step = StepVerify
		}
		f.record(time.Now(), "", &GateError{Bundle: f.src.Name, Step: step, Err: err})
		return
	}
	if _, err = Gate(ctx, f.src.Name, f.src.URL, b, f.engine, nil); err == nil {
		err = errActivated
	}
	f.record(time.Now(), "", err)
}

// update is the downloader's callback: a failed download, "not modified"
// (no bundle), or a new bundle for the gate. A refusal is recorded, not
// returned: the download itself succeeded, and its ETag stays cached so the
// same refused bundle is not fetched again.
func (f *follower) update(ctx context.Context, u download.Update) error {
	now := time.Now()
	switch {
	case u.Error != nil:
		f.record(now, "", f.downloadFailure(u.Error))
	case u.Bundle == nil: // not modified
		f.record(now, "", nil)
	default:
		_, err := Gate(ctx, f.src.Name, f.src.URL, u.Bundle, f.engine, nil)
		if err == nil {
			err = errActivated
		}
		f.record(now, u.ETag, err)
	}
	return nil
}

// errActivated marks, for record, a download that went live.
var errActivated = errors.New("activated")

// record folds one outcome into the status: errActivated, a *GateError, a
// *DownloadError, or nil for a poll answered "not modified".
func (f *follower) record(now time.Time, etag string, outcome error) {
	f.mu.Lock()
	s := &f.status
	var gate *GateError
	switch {
	case errors.As(outcome, &gate):
		s.LastDownload, s.ETag = now, firstNonEmpty(etag, s.ETag)
		// An unreadable bundle is downloaded again at every retry: count
		// a refusal once while the same one stays on the server.
		if s.LastError == nil || s.LastError.Error() != outcome.Error() {
			s.Refusals++
			refusals.WithLabelValues(s.Name, string(gate.Step)).Inc()
		}
		s.LastError, s.LastErrorTime = outcome, now
	case outcome != nil && !errors.Is(outcome, errActivated):
		s.LastError, s.LastErrorTime = outcome, now
		s.DownloadErrors++
		downloadErrors.WithLabelValues(s.Name).Inc()
	case errors.Is(outcome, errActivated):
		s.LastDownload, s.ETag = now, firstNonEmpty(etag, s.ETag)
		s.LastActivation, s.LastError = now, nil
		s.Activations++
		activations.WithLabelValues(s.Name).Inc()
		lastActivation.WithLabelValues(s.Name).Set(float64(now.UnixNano()) / 1e9)
	default: // not modified: the server answers again
		s.LastDownload = now
		if _, failing := s.LastError.(*DownloadError); failing {
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
	if f.onStatus != nil {
		f.onStatus(snapshot)
	}
}

// downloadFailure tells a poll that got no bundle (the server unreachable,
// an HTTP error: a *DownloadError) from a bundle that came but could not be
// read (a *GateError at StepVerify or StepRead). OPA's downloader reports
// both as its Update's error.
func (f *follower) downloadFailure(err error) error {
	var httpErr download.HTTPError
	var urlErr *url.Error
	if errors.As(err, &httpErr) || errors.As(err, &urlErr) || strings.HasPrefix(err.Error(), "request failed") {
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

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
