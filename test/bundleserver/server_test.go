package bundleserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

const bundlePath = "bundles/reactive.tar.gz"

// tarball builds a valid bundle whose manifest revision is rev.
func tarball(t testing.TB, rev string) []byte {
	t.Helper()
	roots := []string{"t"}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: rev, Roots: &roots},
		Modules: []bundle.ModuleFile{{
			Path: "/t.rego",
			URL:  "/t.rego",
			Raw:  []byte("package t\n\nrev := \"" + rev + "\"\n"),
		}},
		Data: map[string]any{},
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newDownloader returns OPA's downloader for url/bundlePath; longPoll nil
// disables long polling. Polling delays are long so that, without long
// polling, no second download would happen within a test's deadlines.
func newDownloader(t testing.TB, url string, trigger plugins.TriggerMode, longPoll *int64) *download.Downloader {
	t.Helper()
	client, err := rest.New([]byte(`{"name":"x","url":"`+url+`"}`), nil, rest.Logger(logging.NewNoOpLogger()))
	if err != nil {
		t.Fatal(err)
	}
	minDelay, maxDelay := int64(60), int64(120)
	cfg := download.Config{
		Trigger: &trigger,
		Polling: download.PollingConfig{
			MinDelaySeconds:           &minDelay,
			MaxDelaySeconds:           &maxDelay,
			LongPollingTimeoutSeconds: longPoll,
		},
	}
	if err := cfg.ValidateAndInjectDefaults(); err != nil {
		t.Fatal(err)
	}
	return download.New(cfg, client, bundlePath)
}

func revisionOf(u download.Update) string {
	if u.Bundle == nil {
		return ""
	}
	return u.Bundle.Manifest.Revision
}

// TestLongPoll: the first download gets r1; r2, published while the
// downloader's request is held, reaches it at once over that request.
func TestLongPoll(t *testing.T) {
	s := New()
	s.Publish(bundlePath, tarball(t, "r1"))
	url := s.Start(t)

	updates := make(chan download.Update, 16)
	timeout := int64(30) // far beyond the test's deadlines: a timeout is no answer
	d := newDownloader(t, url, plugins.TriggerPeriodic, &timeout).
		WithCallback(func(ctx context.Context, u download.Update) error {
			select {
			case updates <- u:
			case <-ctx.Done():
			}
			return nil
		})
	ctx := context.Background()
	d.Start(ctx)
	t.Cleanup(func() { d.Stop(ctx) })

	next := func(want string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case u := <-updates:
				if u.Error != nil {
					t.Fatalf("download error: %v", u.Error)
				}
				if u.Bundle == nil {
					continue // a 304
				}
				if got := revisionOf(u); got != want {
					t.Fatalf("got revision %q, want %q", got, want)
				}
				if u.ETag != s.ETag(bundlePath) {
					t.Fatalf("update ETag %q, server's %q", u.ETag, s.ETag(bundlePath))
				}
				return
			case <-deadline:
				t.Fatalf("no revision %q within 5s; stats %+v", want, s.Stats(bundlePath))
			}
		}
	}
	next("r1")

	// Publish only once the downloader's next request is held, so that r2
	// can only arrive over a long poll (the polling delay is 60s or more).
	if !waitFor(t, func() bool { return s.Waiting(bundlePath) > 0 }, "a held request") {
		t.FailNow()
	}
	start := time.Now()
	s.Publish(bundlePath, tarball(t, "r2"))
	next("r2")
	if el := time.Since(start); el > time.Second {
		t.Errorf("r2 took %v after Publish", el)
	}

	// The downloader goes straight back to waiting on r2.
	if !waitFor(t, func() bool { return s.Waiting(bundlePath) > 0 }, "a held request after r2") {
		t.FailNow()
	}
	st := s.Stats(bundlePath)
	if st.LongPolls == 0 || st.Held == 0 {
		t.Errorf("the downloader did not long-poll: %+v", st)
	}
	if st.OK != 2 || st.NotModified != 0 || st.Requests != 3 {
		t.Errorf("want 3 requests (r1, held then r2, held): %+v", st)
	}
}

// TestNotModified: without long polling, a second download with the same
// ETag is a 304, which the downloader reports as an update without bundle.
func TestNotModified(t *testing.T) {
	s := New()
	s.Publish("/"+bundlePath, tarball(t, "r1")) // leading slash ignored
	url := s.Start(t)

	var got []download.Update
	d := newDownloader(t, url, plugins.TriggerManual, nil).
		WithCallback(func(_ context.Context, u download.Update) error {
			got = append(got, u)
			return nil
		})
	ctx := context.Background()
	for range 2 {
		if err := d.Trigger(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 {
		t.Fatalf("got %d updates, want 2", len(got))
	}
	if revisionOf(got[0]) != "r1" {
		t.Errorf("first update: revision %q, want r1", revisionOf(got[0]))
	}
	if got[1].Bundle != nil || got[1].Error != nil || got[1].ETag != got[0].ETag {
		t.Errorf("second update: bundle %v, error %v, ETag %q (first %q); want a 304",
			got[1].Bundle != nil, got[1].Error, got[1].ETag, got[0].ETag)
	}
	if st := s.Stats(bundlePath); st != (Stats{Requests: 2, OK: 1, NotModified: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// TestProtocol checks the raw HTTP answers the downloader relies on.
func TestProtocol(t *testing.T) {
	s := New()
	data := tarball(t, "r1")
	s.Publish(bundlePath, data)
	url := s.Start(t) + "/" + bundlePath

	get := func(ctx context.Context, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	resp := get(context.Background())
	body, _ := io.ReadAll(resp.Body)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !bytes.Equal(body, data) ||
		resp.Header.Get("Content-Type") != "application/vnd.openpolicyagent.bundles" ||
		len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Fatalf("GET: %d, %d bytes, Content-Type %q, ETag %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"), etag)
	}

	t.Run("304", func(t *testing.T) {
		// A superseded ETag before the current one, as the downloader may send.
		resp := get(context.Background(), "If-None-Match", `"old", `+etag)
		if resp.StatusCode != 304 || resp.Header.Get("ETag") != etag {
			t.Errorf("got %d ETag %q, want 304 %q", resp.StatusCode, resp.Header.Get("ETag"), etag)
		}
	})
	t.Run("stale ETag", func(t *testing.T) {
		resp := get(context.Background(), "If-None-Match", `"old"`, "Prefer", "modes=snapshot,delta;wait=30")
		if resp.StatusCode != 200 {
			t.Errorf("got %d, want 200 at once", resp.StatusCode)
		}
	})
	t.Run("wait expires", func(t *testing.T) {
		start := time.Now()
		resp := get(context.Background(), "If-None-Match", etag, "Prefer", "modes=snapshot,delta;wait=1")
		if el := time.Since(start); resp.StatusCode != 304 || el < 900*time.Millisecond || el > 3*time.Second {
			t.Errorf("got %d after %v, want 304 after 1s", resp.StatusCode, el)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("If-None-Match", etag)
			req.Header.Set("Prefer", "wait=30")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		if !waitFor(t, func() bool { return s.Waiting(bundlePath) == 1 }, "the held request") {
			t.FailNow()
		}
		cancel()
		if err := <-done; err == nil {
			t.Error("a canceled request got an answer")
		}
		// The server must let go of the request, not hold it for 30s.
		if !waitFor(t, func() bool { return s.Waiting(bundlePath) == 0 }, "the server to drop the canceled request") {
			t.FailNow()
		}
	})
	t.Run("publish same bytes", func(t *testing.T) {
		// Same bytes, same ETag: nothing changed for the client.
		go func() {
			waitFor(t, func() bool { return s.Waiting(bundlePath) == 1 }, "the held request")
			s.Publish(bundlePath, bytes.Clone(data))
		}()
		start := time.Now()
		resp := get(context.Background(), "If-None-Match", etag, "Prefer", "wait=1")
		if el := time.Since(start); resp.StatusCode != 304 || el < 900*time.Millisecond {
			t.Errorf("got %d after %v, want 304 after 1s", resp.StatusCode, el)
		}
	})
	t.Run("404", func(t *testing.T) {
		r2, err := http.Get(url + ".missing")
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != 404 || s.Stats(bundlePath+".missing") != (Stats{Requests: 1, NotFound: 1}) {
			t.Errorf("got %d, stats %+v", r2.StatusCode, s.Stats(bundlePath+".missing"))
		}
	})
}

// waitFor polls cond for up to 5s. It reports with Error, not Fatal, as it
// may run in another goroutine; callers in the test's goroutine stop on false.
func waitFor(t testing.TB, cond func() bool, what string) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
