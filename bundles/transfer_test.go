package bundles

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/bundleserver"
)

// TestFollowBoundsWholeBundle: a downloaded bundle is bounded as a whole
// before OPA's downloader reads it: a bomb of many files, each under the
// limit, is refused at read naming the file past it, without being
// inflated into memory, and counted once while the downloader fetches it
// again; a transfer over the limit is refused without being read; a
// delta bundle is still refused as such; and the next good revision goes
// live.
func TestFollowBoundsWholeBundle(t *testing.T) {
	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	url := srv.Start(t)
	e, log := NewEmptyEngine("b"), &statusLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		NewFollower(sourceFor(t, url, "", ""), e, Hooks{OnStatus: log.set, Limits: Limits{MaxBundleFileBytes: 4 << 20}}).Run(ctx)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "revision 1", log, func(s Status) bool { return s.ActiveRevision == "b@1" })

	bomb := bundleserver.ManyFilesBomb(t, "2", 100, 1<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	srv.Publish("b.tar.gz", bomb)
	st := waitFor(t, "the bomb refused", log, func(s Status) bool { return s.Refusals == 1 })
	runtime.ReadMemStats(&after)
	var ge *GateError
	require.ErrorAs(t, st.LastError, &ge)
	assert.Equal(t, StepRead, ge.Step)
	assert.Equal(t, "bundle b refused at read: bundle files total more than 4194304 bytes (the size limit of a whole bundle) with d3/data.json", st.LastError.Error())
	assert.Equal(t, "1", e.Active().Revision())
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "inflated into memory")
	t.Logf("refusing a download of 100 files of 1 MiB (%d KiB compressed) allocated %d KiB", len(bomb)>>10, (after.TotalAlloc-before.TotalAlloc)>>10)
	requests := srv.Requests("b.tar.gz")
	waitFor(t, "the bomb fetched again", log, func(Status) bool { return srv.Requests("b.tar.gz") >= requests+2 })
	st = log.get()
	assert.Equal(t, 1, st.Refusals, "the same bomb counted again")
	assert.Equal(t, 0, st.DownloadErrors)

	noise := make([]byte, 5<<20)
	_, _ = rand.Read(noise)
	srv.Publish("b.tar.gz", noise)
	st = waitFor(t, "the transfer refused", log, func(s Status) bool { return s.Refusals == 2 })
	assert.Equal(t, "bundle b refused at read: its transfer is 5242880 bytes (compressed), more than 4194304 (the size limit of a whole bundle)", st.LastError.Error())

	var delta bytes.Buffer
	require.NoError(t, bundle.NewWriter(&delta).Write(bundle.Bundle{
		Manifest: bundle.Manifest{Revision: "4", Roots: &[]string{"t"}},
		Patch:    bundle.Patch{Data: []bundle.PatchOperation{{Op: "upsert", Path: "/t/x", Value: 1}}},
	}))
	srv.Publish("b.tar.gz", delta.Bytes())
	st = waitFor(t, "the delta bundle refused", log, func(s Status) bool { return s.Refusals == 3 })
	assert.Equal(t, "bundle b@4 refused at read: delta bundles are not supported: serve whole (snapshot) bundles", st.LastError.Error())

	srv.Publish("b.tar.gz", tarball(t, "5", "5"))
	st = waitFor(t, "revision 5", log, func(s Status) bool { return s.ActiveRevision == "b@5" })
	assert.NoError(t, st.LastError)
	assert.Equal(t, "5", evalRev(t, e))
}

// TestBoundedBodyStopsTheTransfer: a bundle sent with no Content-Length
// is read no further than the limit, and the connection is closed: the
// server cannot finish sending it.
func TestBoundedBodyStopsTheTransfer(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for sent.Load() < 256<<20 {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: &boundedTransport{next: http.DefaultTransport, limit: 1 << 20}}
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	var tooLarge *tooLargeError
	require.ErrorAs(t, err, &tooLarge)
	assert.Equal(t, "its transfer is more than 1048576 bytes (compressed; the size limit of a whole bundle)", err.Error())
	_, err = resp.Body.Read(make([]byte, 1))
	assert.ErrorAs(t, err, &tooLarge, "every read fails")
	require.NoError(t, resp.Body.Close())
	srv.Close() // waits for the handler, which ends when the client is gone
	assert.Less(t, sent.Load(), int64(256<<20), "the whole transfer was sent")
	t.Logf("the server sent %d KiB before the connection closed", sent.Load()>>10)
}

// TestBoundedClientKeepsTheService: the downloader's client is the
// configured service's: its URL, headers and credentials.
func TestBoundedClientKeepsTheService(t *testing.T) {
	var got http.Header
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, path = r.Header.Clone(), r.URL.Path
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	src := parseSource(t, `services:
  s:
    url: `+srv.URL+`/base/
    headers: {X-Team: factory}
    credentials: {bearer: {token: secret}}
bundles:
  b: {service: s, resource: b.tar.gz}
`)
	client, err := boundedClient(src.client, src.keys, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, "s", client.Service())
	resp, err := client.Do(context.Background(), http.MethodGet, "b.tar.gz")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, "/base/b.tar.gz", path)
	assert.Equal(t, "Bearer secret", got.Get("Authorization"))
	assert.Equal(t, "factory", got.Get("X-Team"))
}
