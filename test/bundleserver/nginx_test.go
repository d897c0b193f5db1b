//go:build integration

package bundleserver

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestStartNginx: nginx serves the bundle with an ETag and answers
// If-None-Match with 304, over HTTP and, with StartNginxTLS, over HTTPS
// with a certificate its CA file verifies.
func TestStartNginx(t *testing.T) {
	root := t.TempDir()
	data := tarball(t, "r1")
	if err := os.MkdirAll(filepath.Join(root, "bundles"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, bundlePath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tlsURL, caFile := StartNginxTLS(t, root)
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("no certificate in %s", caFile)
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, c := range []struct {
		base   string
		client *http.Client
	}{{StartNginx(t, root), http.DefaultClient}, {tlsURL, tlsClient}} {
		url := c.base + "/" + bundlePath
		resp, err := c.client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || etag == "" || resp.ContentLength != int64(len(data)) {
			t.Fatalf("GET %s: %d, ETag %q, length %d (want %d)", url, resp.StatusCode, etag, resp.ContentLength, len(data))
		}

		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s, If-None-Match %s: got %d, want 304", url, etag, resp.StatusCode)
		}
	}
}
