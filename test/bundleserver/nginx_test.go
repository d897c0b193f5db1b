//go:build integration

package bundleserver

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestStartNginx(t *testing.T) {
	root := t.TempDir()
	data := tarball(t, "r1")
	if err := os.MkdirAll(filepath.Join(root, "bundles"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, bundlePath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	url := StartNginx(t, root) + "/" + bundlePath

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" || resp.ContentLength != int64(len(data)) {
		t.Fatalf("GET: %d, ETag %q, length %d (want %d)", resp.StatusCode, etag, resp.ContentLength, len(data))
	}

	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: got %d, want 304", etag, resp.StatusCode)
	}
}
