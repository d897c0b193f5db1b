//go:build integration

package push_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
	"governor.dev/governor/test/testkeys"
)

// writeCert writes a certificate for 127.0.0.1 from a new CA, and its key,
// as PEM files (replacing them whole), and returns the CA clients trust.
func writeCert(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	ca := testkeys.NewCA(t, "push-ca")
	c := ca.Server(t, "push")
	for path, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		tmp := path + ".tmp"
		require.NoError(t, os.WriteFile(tmp, data, 0o600))
		require.NoError(t, os.Rename(tmp, path))
	}
	return ca.X509
}

// TestPushOverTLS: with a certificate, the endpoint speaks HTTPS only, and a
// rotated certificate is served without a restart.
func TestPushOverTLS(t *testing.T) {
	e := start(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile)

	s := push.NewServer(e.c, push.Options{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool { return s.Addr() != "" }, 10*time.Second, 10*time.Millisecond)

	trusting := func(cert *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	path := obsPath(e.ns, "factory-qos")
	post := func(c *http.Client, scheme string) (int, error) {
		req, err := http.NewRequest(http.MethodPost, scheme+"://"+s.Addr()+path, strings.NewReader(`{"jitter": 1.5}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+tokenA)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	code, err := post(trusting(first), "https")
	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, code)
	assert.Equal(t, "1500m", str(e.loop(t, "factory-qos").Status.Observations["jitter"].Value))

	code, err = post(&http.Client{Timeout: 5 * time.Second}, "http")
	assert.True(t, err != nil || code == http.StatusBadRequest, "plain HTTP must not be served: %d %v", code, err)

	// Rotation: the new certificate is served, the old one no longer verifies.
	second := writeCert(t, certFile, keyFile)
	require.Eventually(t, func() bool {
		code, err := post(trusting(second), "https")
		return err == nil && code == http.StatusNoContent
	}, 30*time.Second, 100*time.Millisecond, "the rotated certificate is not served")
	_, err = post(trusting(first), "https")
	assert.Error(t, err, "the old certificate is still served")
}
