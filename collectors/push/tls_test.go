package push_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files (replacing them whole) and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "push"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		tmp := path + ".tmp"
		require.NoError(t, os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600))
		require.NoError(t, os.Rename(tmp, path))
	}
	return cert
}

// TestPushOverTLS: with a certificate, the endpoint speaks HTTPS only, and a
// rotated certificate is served without a restart.
func TestPushOverTLS(t *testing.T) {
	e := start(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, 1)

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
	second := writeCert(t, certFile, keyFile, 2)
	require.Eventually(t, func() bool {
		code, err := post(trusting(second), "https")
		return err == nil && code == http.StatusNoContent
	}, 30*time.Second, 100*time.Millisecond, "the rotated certificate is not served")
	_, err = post(trusting(first), "https")
	assert.Error(t, err, "the old certificate is still served")
}

func TestPushTLSNeedsCertAndKey(t *testing.T) {
	err := push.NewServer(nil, push.Options{Addr: "127.0.0.1:0", CertFile: "tls.crt"}).Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "both a certificate and a key")
	err = push.NewServer(nil, push.Options{Addr: "127.0.0.1:0", CertFile: "missing.crt", KeyFile: "missing.key"}).Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.crt")
}
