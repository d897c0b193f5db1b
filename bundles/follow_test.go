package bundles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"governor.dev/governor/test/bundleserver"
)

// testBundleDir writes a bundle whose rule t.rev is rev and whose test
// expects testRev.
func testBundleDir(t *testing.T, rev, testRev string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		".manifest":   `{"revision":"` + rev + `","roots":["t"]}`,
		"t.rego":      "package t\n\nrev := " + rev + "\n",
		"t_test.rego": "package t\n\ntest_rev if rev == " + testRev + "\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func evalRev(t *testing.T, e *Engine) string {
	t.Helper()
	pq, err := e.Active().Prepare(context.Background(), "t/rev")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background())
	if err != nil || len(rs) == 0 {
		t.Fatalf("eval: %v %v", rs, err)
	}
	return fmt.Sprint(rs[0].Expressions[0].Value)
}

type statusLog struct {
	mu   sync.Mutex
	last Status
}

func (s *statusLog) set(st Status) { s.mu.Lock(); s.last = st; s.mu.Unlock() }
func (s *statusLog) get() Status   { s.mu.Lock(); defer s.mu.Unlock(); return s.last }

func waitFor(t *testing.T, what string, log *statusLog, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st := log.get(); ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last status %+v", what, log.get())
	return Status{}
}

// sourceFor parses an OPA configuration following bundle "b" at
// URL/b.tar.gz, polled every second; extra is more YAML for the bundle
// (indented under it) and top is more top-level YAML.
func sourceFor(t *testing.T, url, extra, top string) *Source {
	t.Helper()
	return parseSource(t, fmt.Sprintf(`services:
  server:
    url: %s
bundles:
  b:
    service: server
    resource: b.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1}
%s
%s`, url, extra, top))
}

// following are the limits of the tests about following: they serve
// unsigned bundles over plain HTTP, which governor refuses unless allowed
// (TestParseConfigRefusesUnsignedAndInsecure); signatures and TLS have tests
// of their own (sign_test.go, clienttls_test.go).
var following = Limits{AllowUnsignedBundles: true, AllowInsecureServices: true}

// parseSource is the one bundle of an OPA configuration.
func parseSource(t *testing.T, config string) *Source {
	t.Helper()
	cfg, err := ParseConfig([]byte(config), following)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cfg.Close)
	return cfg.Sources[0]
}

// follow follows src, until the test ends, on an engine of its own; the
// log holds the last status.
func follow(t *testing.T, src *Source) (*Engine, *statusLog) {
	e, log := NewEmptyEngine("b"), &statusLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		NewFollower(src, e, Hooks{OnStatus: log.set, Decisions: func(context.Context, string) ([]string, error) {
			return []string{"t/rev"}, nil
		}}).Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return e, log
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

// TestFollowLongPolling: with long polling, a revision published while the
// downloader waits goes live without waiting for the next poll (the
// polling delay here is a minute).
func TestFollowLongPolling(t *testing.T) {
	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	url := srv.Start(t)
	_, log := follow(t, parseSource(t, `services: {s: {url: "`+url+`"}}
bundles:
  b:
    service: s
    resource: b.tar.gz
    polling: {min_delay_seconds: 60, max_delay_seconds: 120, long_polling_timeout_seconds: 30}
`))
	waitFor(t, "revision 1", log, func(s Status) bool { return s.ActiveRevision == "b@1" })
	for srv.Waiting("b.tar.gz") == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Publish("b.tar.gz", tarball(t, "2", "2"))
	waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	if st := srv.Stats("b.tar.gz"); st.LongPolls == 0 || st.Requests > 4 {
		t.Fatalf("want long polls and few requests, got %+v", st)
	}
}

// tarball is a built bundle's bytes.
func tarball(t *testing.T, rev, testRev string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if _, err := Build(context.Background(), BuildOptions{Dir: testBundleDir(t, rev, testRev), Output: out}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestFollowDownloadErrors: a server that is down is a download error, the
// engine stays without a revision, and the registry is not ready, saying why.
func TestFollowDownloadErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	cfg, err := ParseConfig([]byte("services: {s: {url: \""+url+"\"}}\nbundles: {b: {service: s, resource: b.tar.gz}}\n"), following)
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	reg := NewRegistry()
	if err := reg.AddSources(cfg); err != nil {
		t.Fatal(err)
	}
	if err := reg.Ready(); err == nil || !strings.Contains(err.Error(), "b (waiting for the first download)") {
		t.Fatalf("Ready before any download = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { reg.Start(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := reg.Status("b")
		var derr *DownloadError
		if errors.As(st.LastError, &derr) && st.DownloadErrors > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download error reported: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := reg.Ready(); err == nil || !strings.Contains(err.Error(), "downloading bundle b") {
		t.Fatalf("Ready = %v, want the download error", err)
	}
	e, _ := reg.Engine("b")
	if _, err := e.Decide(ctx, Request{Decision: "t/rev", Input: map[string]any{}}); err == nil {
		t.Fatal("an engine without a revision decided")
	}
}

// TestFollowFile: a file:// resource, for development, goes through the
// same gate (here a failing test keeps it out).
func TestFollowFile(t *testing.T) {
	good, bad := testBundleDir(t, "7", "7"), testBundleDir(t, "8", "9")
	for _, c := range []struct {
		dir  string
		want string
	}{{good, "b@7"}, {bad, ""}} {
		_, log := follow(t, parseSource(t, "bundles: {b: {resource: \"file://"+c.dir+"\"}}\n"))
		st := waitFor(t, "the file read", log, func(s Status) bool { return s.Activations+s.Refusals == 1 })
		if st.ActiveRevision != c.want {
			t.Fatalf("%s: active %q, want %q (%v)", c.dir, st.ActiveRevision, c.want, st.LastError)
		}
	}
}

// TestFollowBearerToken: the service's credentials, as OPA's service
// configuration gives them, go with every poll.
func TestFollowBearerToken(t *testing.T) {
	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer web.Close()
	for _, c := range []struct {
		token string
		want  string
	}{{"wrong", ""}, {"s3cret", "b@1"}} {
		_, log := follow(t, parseSource(t, fmt.Sprintf("services: {s: {url: %q, credentials: {bearer: {token: %s}}}}\nbundles: {b: {service: s, resource: b.tar.gz}}\n", web.URL, c.token)))
		st := waitFor(t, "the first poll", log, func(s Status) bool { return s.Activations+s.DownloadErrors > 0 })
		if st.ActiveRevision != c.want {
			t.Fatalf("token %s: active %q, want %q (%v)", c.token, st.ActiveRevision, c.want, st.LastError)
		}
		if c.want == "" && !strings.Contains(fmt.Sprint(st.LastError), "Unauthorized") {
			t.Fatalf("token %s: want Unauthorized in the error, got %v", c.token, st.LastError)
		}
	}
}

// TestFollowAfterDownloadErrors: OPA's downloader forgets its ETag after a
// failed poll and downloads the bundle on the server again; neither the
// active revision nor a refused one is then activated or counted twice.
func TestFollowAfterDownloadErrors(t *testing.T) {
	srv := bundleserver.New()
	var failing atomic.Bool
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer web.Close()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	_, log := follow(t, sourceFor(t, web.URL, "", ""))
	waitFor(t, "revision 1", log, func(s Status) bool { return s.ActiveRevision == "b@1" })

	outage := func(errorsBefore int) {
		t.Helper()
		failing.Store(true)
		waitFor(t, "a download error", log, func(s Status) bool { return s.DownloadErrors > errorsBefore })
		failing.Store(false)
	}
	outage(0)
	st := waitFor(t, "recovery", log, func(s Status) bool { return s.LastError == nil && s.LastDownload.After(s.LastErrorTime) })
	if st.Activations != 1 || st.ActiveRevision != "b@1" {
		t.Fatalf("the active bundle, downloaded again, was activated again: %+v", st)
	}

	srv.Publish("b.tar.gz", tarball(t, "2", "3")) // its test fails
	st = waitFor(t, "the refusal", log, func(s Status) bool { return s.Refusals == 1 })
	outage(st.DownloadErrors)
	st = waitFor(t, "the same refusal again", log, func(s Status) bool {
		var ge *GateError
		return errors.As(s.LastError, &ge) && s.LastDownload.After(s.LastErrorTime.Add(-time.Millisecond)) && s.DownloadErrors > 1
	})
	time.Sleep(1500 * time.Millisecond) // more polls of the same refused bundle
	if st = log.get(); st.Refusals != 1 || st.Activations != 1 || st.ActiveRevision != "b@1" {
		t.Fatalf("a refused bundle downloaded again was counted again or activated: %+v", st)
	}
}

// TestFollowerHoldsSkipsAndResumes: a revision waits, showing why, while
// the loops' decision paths cannot be listed; a path the active revision
// does not serve either (a loop's typo) holds nothing back; the same bundle
// published again is not activated again, and clears an earlier refusal;
// a follower run again goes on from what it knew.
func TestFollowerHoldsSkipsAndResumes(t *testing.T) {
	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	url := srv.Start(t)
	var failures atomic.Int32
	log := &statusLog{}
	e := NewEmptyEngine("b")
	f := NewFollower(sourceFor(t, url, "", ""), e, Hooks{OnStatus: log.set,
		Decisions: func(context.Context, string) ([]string, error) {
			if failures.Add(-1) >= 0 {
				return nil, errors.New("the API server is away")
			}
			return []string{"t/rev", "t/typo"}, nil
		}})
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stop := run()
	defer func() { stop() }()
	waitFor(t, "revision 1", log, func(s Status) bool { return s.ActiveRevision == "b@1" })

	failures.Store(2)
	rev2 := tarball(t, "2", "2")
	srv.Publish("b.tar.gz", rev2)
	st := waitFor(t, "a held revision", log, func(s Status) bool { var held *HeldError; return errors.As(s.LastError, &held) })
	if !strings.Contains(st.LastError.Error(), "the API server is away") || st.Refusals != 0 {
		t.Fatalf("held: %+v", st)
	}
	st = waitFor(t, "revision 2", log, func(s Status) bool { return s.ActiveRevision == "b@2" })
	if st.LastError != nil || st.Activations != 2 {
		t.Fatalf("revision 2 held back by a path revision 1 does not serve: %+v", st)
	}

	srv.Publish("b.tar.gz", tarball(t, "3", "4")) // its test fails
	waitFor(t, "the refusal", log, func(s Status) bool { return s.Refusals == 1 })
	srv.Publish("b.tar.gz", rev2) // rolled back
	st = waitFor(t, "the rollback", log, func(s Status) bool { return s.LastError == nil })
	if st.Activations != 2 || st.ActiveRevision != "b@2" {
		t.Fatalf("the active revision published again was activated again: %+v", st)
	}

	stop()
	before := log.get()
	stop = run()
	waitFor(t, "a poll of the second run", log, func(s Status) bool { return s.LastDownload.After(before.LastDownload) })
	time.Sleep(1500 * time.Millisecond)
	if st := log.get(); st.Activations != 2 || st.LastError != nil || st.ActiveRevision != "b@2" {
		t.Fatalf("a second run activated again or lost the state: %+v", st)
	}
}
