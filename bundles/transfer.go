package bundles

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// OPA's downloader reads a bundle with a loader of its own, which bounds
// each file but takes no filter, so it cannot bound their sum: a bundle of
// many files, each under the limit, would take them all. The response
// reaches it through the service's rest.Client, whose credentials plugin
// makes the HTTP client; boundedClient gives the downloader the same
// service with a plugin that wraps the configured one's client, so that
// every bundle is checked (sizes, then OPA's own reading) before the
// downloader reads a byte of it.

// boundedPlugin is the credentials plugin's name in a bounded client's
// configuration; only that client's own lookup knows it.
const boundedPlugin = "governor-bounded-bundle"

// boundedClient is client's service (URL, headers, TLS, timeouts and
// credentials as configured) with every bundle it downloads bounded by
// limit: see boundedBody. keyConfigs are the configuration's keys, which
// credentials such as OAuth2's JWT signing use. What a configuration cannot
// hold is not carried over: OPA's manager options for TLS versions, cipher
// suites and tracing, which governor does not set.
func boundedClient(client rest.Client, keyConfigs map[string]*keys.Config, limit int64) (rest.Client, error) {
	cfg := *client.Config()
	configured, err := cfg.AuthPlugin(client.AuthPluginLookup())
	if err != nil {
		return rest.Client{}, fmt.Errorf("service %s: %w", client.Service(), err)
	}
	var none rest.Config
	cfg.Credentials = none.Credentials
	name := boundedPlugin
	cfg.Credentials.Plugin = &name
	raw, err := json.Marshal(cfg)
	if err != nil {
		return rest.Client{}, fmt.Errorf("service %s: %w", client.Service(), err)
	}
	plugin := &boundedAuth{configured: configured, limit: limit}
	return rest.New(raw, keyConfigs, rest.Name(client.Service()), rest.Logger(client.Logger()),
		rest.AuthPluginLookup(func(string) rest.HTTPAuthPlugin { return plugin }))
}

// boundedAuth is the configured credentials plugin, whose HTTP client's
// successful responses are bounded.
type boundedAuth struct {
	configured rest.HTTPAuthPlugin
	limit      int64
}

// NewClient is the configured plugin's client (a copy: it may be shared)
// with a bounding transport.
func (a *boundedAuth) NewClient(c rest.Config) (*http.Client, error) {
	hc, err := a.configured.NewClient(c)
	if err != nil {
		return nil, err
	}
	bounded := *hc
	bounded.Transport = &boundedTransport{next: cmp.Or[http.RoundTripper](hc.Transport, http.DefaultTransport), limit: a.limit}
	return &bounded, nil
}

// Prepare authenticates each request as configured.
func (a *boundedAuth) Prepare(req *http.Request) error { return a.configured.Prepare(req) }

type boundedTransport struct {
	next  http.RoundTripper
	limit int64
}

// RoundTrip bounds the body of a bundle (a 200 answer); other answers are
// OPA's, as they come.
func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Body == nil {
		return resp, err
	}
	resp.Body = &boundedBody{body: resp.Body, length: resp.ContentLength, limit: t.limit}
	return resp, nil
}

// boundedBody is a bundle's body, checked at its first read before any of
// it is passed on: the transfer (compressed) must be at most limit bytes,
// read into memory no further than that, and the tarball's files must total
// at most limit bytes once inflated, as their headers say (inflated to be
// counted, never kept). A file over the limit by itself, and a tarball that
// does not read, are left to OPA's reader and its messages. Past a limit,
// every read fails with a *tooLargeError.
type boundedBody struct {
	body   io.ReadCloser
	length int64 // Content-Length, -1 if unknown
	limit  int64
	// checked is the bundle once checked, err why it is not.
	checked io.Reader
	err     error
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.checked == nil && b.err == nil {
		b.checked, b.err = b.check()
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.checked.Read(p)
}

// Close closes the response, if the first read has not (OPA's downloader
// does not close a body whose reads fail).
func (b *boundedBody) Close() error {
	if b.checked == nil && b.err == nil {
		b.err = http.ErrBodyReadAfterClose
		return b.body.Close()
	}
	return nil
}

// check reads the whole body, if within the limit, and checks it; it closes
// the response either way.
func (b *boundedBody) check() (io.Reader, error) {
	defer func() { _ = b.body.Close() }() // read to its end, or refused: nothing to report
	if b.length > b.limit {
		return nil, &tooLargeError{fmt.Sprintf("its transfer is %d bytes (compressed), more than %d (the size limit of a whole bundle)", b.length, b.limit)}
	}
	var buf bytes.Buffer
	if b.length > 0 {
		buf.Grow(int(b.length) + bytes.MinRead) // room to read the end without growing again
	}
	if _, err := buf.ReadFrom(io.LimitReader(b.body, b.limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > b.limit {
		return nil, &tooLargeError{fmt.Sprintf("its transfer is more than %d bytes (compressed; the size limit of a whole bundle)", b.limit)}
	}
	if err := checkTarball(buf.Bytes(), b.limit); err != nil {
		return nil, err
	}
	return bytes.NewReader(buf.Bytes()), nil
}

// checkTarball counts the files of a gzipped tarball as OPA's tarball
// loader reads them (regular files), from their headers: a *tooLargeError
// once they total more than limit. It stops, with no error, at a file over
// the limit by itself (OPA's reader refuses it, naming it) and at a
// tarball that does not read (OPA's reader says why).
func checkTarball(compressed []byte, limit int64) error {
	gz, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil
	}
	total := &totalSize{limit: limit}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > limit {
			return nil
		}
		if total.skip(h.Name, h.FileInfo(), 0) {
			return &tooLargeError{total.err().Error()}
		}
	}
}

// tooLargeError is a downloaded bundle refused for its size before OPA's
// downloader read it.
type tooLargeError struct{ reason string }

func (e *tooLargeError) Error() string { return e.reason }
