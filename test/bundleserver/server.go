// Package bundleserver serves OPA bundles to OPA's downloader
// (github.com/open-policy-agent/opa/v1/download) in tests and benchmarks:
// StartNginx for a plain static file server (Debian's nginx; build tag
// integration, as the tests that use it), and Server for a server that
// speaks OPA's long-polling bundle protocol; and DecisionLogs, a service
// that takes OPA's decision log uploads.
package bundleserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ContentType is the bundle media type. OPA's downloader takes it, on a 200
// response, as the server's promise that it supports long polling
// (download.isLongPollSupported); any other type turns long polling off
// until the next 200.
const ContentType = "application/vnd.openpolicyagent.bundles"

// Stats counts the requests for one path.
type Stats struct {
	Requests    int // all requests, whatever their answer
	LongPolls   int // requests that carried Prefer: wait=N with N > 0
	Held        int // requests that were actually held waiting for a change
	OK          int // 200 answers (a bundle was sent)
	NotModified int // 304 answers
	NotFound    int // 404 answers
}

// Server is a long-polling bundle server. The zero value is not usable; use
// New. It is safe for concurrent use: Publish may run while requests are
// held.
type Server struct {
	mu      sync.Mutex
	bundles map[string]*revision
	stats   map[string]*Stats
	waiting map[string]int
}

type revision struct {
	data []byte
	etag string
	// changed is closed by the next Publish of the same path, which wakes
	// the requests held on this revision.
	changed chan struct{}
}

// New returns a server with no bundles.
func New() *Server {
	return &Server{
		bundles: map[string]*revision{},
		stats:   map[string]*Stats{},
		waiting: map[string]int{},
	}
}

// Start serves s on a free loopback port and returns the base URL (without a
// trailing slash). The server stops at t.Cleanup; requests held at that time
// are answered 304 at once, since httptest's Close waits for them.
func (s *Server) Start(t testing.TB) string {
	t.Helper()
	stop := make(chan struct{})
	ts := httptest.NewServer(s.handler(stop))
	t.Cleanup(func() {
		close(stop)
		ts.Close()
	})
	return ts.URL
}

// StartTLS is Start over HTTPS. It also returns the path of a file
// holding the server's certificate (PEM), for an OPA service's
// tls.ca_cert.
func (s *Server) StartTLS(t testing.TB) (url, caCert string) {
	t.Helper()
	stop := make(chan struct{})
	url, caCert = ServeTLS(t, s.handler(stop))
	t.Cleanup(func() { close(stop) }) // runs before ServeTLS's: held requests are answered first
	return url, caCert
}

// ServeTLS serves h over HTTPS on a free loopback port until t.Cleanup, and
// returns its base URL and the path of a file holding its certificate
// (PEM), for an OPA service's tls.ca_cert.
func ServeTLS(t testing.TB, h http.Handler) (url, caCert string) {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	caCert = filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(caCert, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return ts.URL, caCert
}

// Publish makes tarball the current revision of the bundle at path (e.g.
// "bundles/b.tar.gz"; a leading slash is ignored) and answers the requests
// held on the previous revision. The tarball is not copied: do not modify
// it afterwards.
func (s *Server) Publish(path string, tarball []byte) {
	path = clean(path)
	sum := sha256.Sum256(tarball)
	next := &revision{
		data:    tarball,
		etag:    `"` + hex.EncodeToString(sum[:16]) + `"`,
		changed: make(chan struct{}),
	}
	s.mu.Lock()
	prev := s.bundles[path]
	s.bundles[path] = next
	s.mu.Unlock()
	if prev != nil {
		close(prev.changed)
	}
}

// ETag returns the ETag (quoted) of the current revision at path, or "" if
// nothing is published there.
func (s *Server) ETag(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.bundles[clean(path)]; r != nil {
		return r.etag
	}
	return ""
}

// Requests returns the number of requests received for path.
func (s *Server) Requests(path string) int {
	return s.Stats(path).Requests
}

// Stats returns the counters of path.
func (s *Server) Stats(path string) Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[clean(path)]; st != nil {
		return *st
	}
	return Stats{}
}

// Waiting returns the number of requests for path being held right now, so
// that a test can publish once a long poll is surely in flight.
func (s *Server) Waiting(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting[clean(path)]
}

// ServeHTTP serves the bundles; with it s can be mounted in another server.
// Held requests end only by a change, their wait or their context.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler(nil).ServeHTTP(w, r)
}

func (s *Server) handler(stop <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, stop)
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, stop <-chan struct{}) {
	path := clean(r.URL.Path)
	wait := preferWait(r.Header.Values("Prefer"))
	inm := r.Header.Values("If-None-Match")
	st := s.count(path, wait)

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	var timeout <-chan time.Time
	held := false
	for {
		s.mu.Lock()
		rev := s.bundles[path]
		switch {
		case rev == nil:
			st.NotFound++
			s.mu.Unlock()
			http.NotFound(w, r)
			return
		case !matches(inm, rev.etag):
			st.OK++
			s.mu.Unlock()
			send(w, r, rev)
			return
		case wait <= 0:
			st.NotModified++
			s.mu.Unlock()
			notModified(w, rev.etag)
			return
		}
		if !held {
			held = true
			st.Held++
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		s.waiting[path]++
		s.mu.Unlock()

		var expired bool
		select {
		case <-rev.changed:
			// Re-check: the new revision may carry the same bytes.
		case <-timeout:
			expired = true
		case <-stop:
			expired = true
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.waiting[path]--
		if r.Context().Err() != nil {
			s.mu.Unlock()
			return // the client is gone: nobody to answer
		}
		if expired {
			st.NotModified++
			etag := s.bundles[path].etag
			s.mu.Unlock()
			notModified(w, etag)
			return
		}
		s.mu.Unlock()
	}
}

// count counts a request for path, a long poll when it waits, and returns
// path's stats.
func (s *Server) count(path string, wait time.Duration) *Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[path]
	if st == nil {
		st = &Stats{}
		s.stats[path] = st
	}
	st.Requests++
	if wait > 0 {
		st.LongPolls++
	}
	return st
}

// send answers 200 with rev: its body to a GET, only its headers to a HEAD.
func send(w http.ResponseWriter, r *http.Request, rev *revision) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("ETag", rev.etag)
	h.Set("Content-Length", strconv.Itoa(len(rev.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(rev.data) // a failure means the client is gone: nobody to tell
	}
}

// notModified sends the current ETag: the downloader keeps it as its own
// unless it is one of its superseded ETags.
func notModified(w http.ResponseWriter, etag string) {
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusNotModified)
}

// matches reports whether one of the If-None-Match values lists etag. The
// downloader sends its current ETag followed by superseded ones, comma
// separated; per RFC 9110 the comparison is weak.
func matches(values []string, etag string) bool {
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// preferWait returns the wait preference. OPA sends one Prefer header of
// ';'-separated preferences, "modes=snapshot,delta;wait=N"; RFC 7240
// separates them with ',', so both are accepted.
func preferWait(values []string) time.Duration {
	for _, v := range values {
		for p := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ';' || r == ',' }) {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "wait") {
				continue
			}
			if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

// clean makes "/a/b" and "a/b" the same key, as the rest client trims
// slashes from the downloader's path.
func clean(path string) string {
	return strings.TrimLeft(path, "/")
}
