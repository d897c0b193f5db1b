package bundleserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"
)

// GzipBomb is a bundle tarball of revision rev (root t, one small policy)
// that also holds data.json, size zero bytes: about 1/1000 of size once
// compressed. A reader that does not stop at a size limit takes size bytes
// of memory, or more.
func GzipBomb(t testing.TB, rev string, size int64) []byte {
	t.Helper()
	var out bytes.Buffer
	gz, err := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	add := func(name string, body []byte, size int64) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		for n := int64(0); n < size; n += int64(len(body)) {
			if _, err := tw.Write(body[:min(int64(len(body)), size-n)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	manifest := []byte(`{"revision":"` + rev + `","roots":["t"]}`)
	add("/.manifest", manifest, int64(len(manifest)))
	policy := []byte("package t\n\nrev := 1\n")
	add("/t.rego", policy, int64(len(policy)))
	add("/data.json", make([]byte, 1<<20), size)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// ManyFilesBomb is a bundle tarball of revision rev (root t, one small
// policy) that also holds n files d<i>/data.json of size zero bytes each:
// a bomb whose every file may be under a size limit per file while all of
// them together are far over it.
func ManyFilesBomb(t testing.TB, rev string, n int, size int64) []byte {
	t.Helper()
	var out bytes.Buffer
	gz, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	add := func(name string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add("/.manifest", []byte(`{"revision":"`+rev+`","roots":["t"]}`))
	add("/t.rego", []byte("package t\n\nrev := 1\n"))
	zeros := make([]byte, size)
	for i := range n {
		add(fmt.Sprintf("/d%d/data.json", i), zeros)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
