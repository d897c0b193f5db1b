package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// FollowOptions say which bundle to follow on which server.
type FollowOptions struct {
	// URL is the bundle service's base URL, e.g. "http://127.0.0.1:8181".
	URL string
	// Path is the bundle's resource path under URL, e.g. "bundles/reactive.tar.gz".
	Path string
	// Name is the bundle's name, as the Engine's revisions carry it.
	Name string
	// Engine is the engine a new revision is activated on.
	Engine *Engine
	// Decisions are prepared on every new revision before it is activated.
	Decisions []string
	// Polling is the delay between polls. OPA's downloader counts it in
	// whole seconds: each bound is rounded up, to at least 1s. Zero uses
	// OPA's defaults (60s to 120s).
	Polling Polling
	// LongPollingTimeout, when set, asks servers that support it to hold a
	// poll open until a new revision or the timeout (whole seconds, >= 1s).
	LongPollingTimeout time.Duration
	// OnStatus, when set, is called after every poll with the bundle's
	// status. It must not block for long.
	OnStatus func(Status)
}

// Polling bounds the delay between two polls.
type Polling struct {
	Min, Max time.Duration
}

// Status is a followed bundle's state, for status and metrics.
type Status struct {
	Name string
	// ActiveRevision is "name@revision" of the engine's active revision.
	ActiveRevision string
	// ETag is that of the last bundle downloaded.
	ETag string
	// LastDownload is when the server last answered a poll (with a new
	// bundle or "not modified").
	LastDownload time.Time
	// LastActivation is when a downloaded revision last went live.
	LastActivation time.Time
	// LastError is the last download error or refusal (a *GateError), nil
	// once a later revision is activated or a download succeeds without a
	// new bundle after a download error.
	LastError error
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time
	// Activations counts revisions activated; Refusals those the gate refused.
	Activations, Refusals int
}

// Follow polls a bundle server with OPA's downloader (ETag / If-None-Match,
// long polling where the server supports it, backoff on errors) and puts
// each new revision through the Gate. It returns when ctx is done, or at
// once on invalid options.
func Follow(ctx context.Context, opts FollowOptions) error {
	if opts.Engine == nil || opts.Name == "" || opts.URL == "" || opts.Path == "" {
		return errors.New("follow: URL, Path, Name and Engine are required")
	}
	svc, err := json.Marshal(map[string]any{"name": opts.Name, "url": opts.URL})
	if err != nil {
		return err
	}
	client, err := rest.New(svc, nil, rest.Logger(logging.NewNoOpLogger()))
	if err != nil {
		return fmt.Errorf("follow %s: %w", opts.Name, err)
	}
	trigger := plugins.TriggerPeriodic
	cfg := download.Config{Trigger: &trigger}
	if opts.Polling.Min > 0 || opts.Polling.Max > 0 {
		lo, hi := seconds(opts.Polling.Min), seconds(opts.Polling.Max)
		cfg.Polling.MinDelaySeconds, cfg.Polling.MaxDelaySeconds = &lo, &hi
	}
	if opts.LongPollingTimeout > 0 {
		lp := seconds(opts.LongPollingTimeout)
		cfg.Polling.LongPollingTimeoutSeconds = &lp
	}
	if err := cfg.ValidateAndInjectDefaults(); err != nil {
		return fmt.Errorf("follow %s: %w", opts.Name, err)
	}

	f := &follower{opts: opts, source: opts.URL + "/" + opts.Path}
	f.status.Name = opts.Name
	d := download.New(cfg, client, opts.Path).
		WithBundleName(opts.Name).
		WithBundleParserOpts(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}).
		WithCallback(f.update)
	d.Start(ctx)
	<-ctx.Done()
	d.Stop(context.Background())
	return nil
}

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

type follower struct {
	opts   FollowOptions
	source string

	mu     sync.Mutex
	status Status
}

// update is the downloader's callback: a download error, "not modified"
// (no bundle) or a new bundle for the gate. A refusal is recorded, not
// returned: the download itself succeeded, and its ETag stays cached so
// the same refused bundle is not fetched again.
func (f *follower) update(ctx context.Context, u download.Update) error {
	now := time.Now()
	var gateErr error
	if u.Error == nil && u.Bundle != nil {
		_, gateErr = Gate(ctx, f.opts.Name, f.source, u.Bundle, f.opts.Engine, f.opts.Decisions)
	}
	f.mu.Lock()
	s := &f.status
	switch {
	case u.Error != nil:
		s.LastError, s.LastErrorTime = u.Error, now
	case u.Bundle == nil: // not modified
		s.LastDownload = now
		if s.LastError != nil && !isGateError(s.LastError) {
			s.LastError = nil
		}
	case gateErr != nil:
		s.LastDownload, s.ETag = now, u.ETag
		s.LastError, s.LastErrorTime = gateErr, now
		s.Refusals++
	default:
		s.LastDownload, s.ETag = now, u.ETag
		s.LastActivation, s.LastError = now, nil
		s.Activations++
	}
	if active := f.opts.Engine.Active(); active != nil {
		s.ActiveRevision = active.String()
	}
	snapshot := *s
	f.mu.Unlock()
	if f.opts.OnStatus != nil {
		f.opts.OnStatus(snapshot)
	}
	return nil
}

func isGateError(err error) bool {
	var g *GateError
	return errors.As(err, &g)
}
