package bundles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/bundleserver"
)

// issued is a certificate and its key, PEM, signed by a CA (or self-signed).
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	kpem []byte
}

func issue(t *testing.T, name string, ca *issued, server bool) *issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	parent, signer := tmpl, key
	switch {
	case ca == nil:
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	case server:
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		parent, signer = ca.cert, ca.key
	default:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return &issued{cert: cert, key: key,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		kpem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

// TestFollowClientTLS: a bundle server that requires a client certificate
// serves a follower configured with one (OPA's client_tls credentials and
// tls.ca_cert), and refuses one without it.
func TestFollowClientTLS(t *testing.T) {
	ca := issue(t, "bundles-ca", nil, false)
	server, client := issue(t, "bundles", ca, true), issue(t, "governor", ca, false)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", ca.pem), write("client.pem", client.pem), write("client-key.pem", client.kpem)

	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	web := httptest.NewUnstartedServer(srv)
	pair, err := tls.X509KeyPair(server.pem, server.kpem)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	web.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	web.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	web.StartTLS()
	defer web.Close()

	for _, c := range []struct {
		name, credentials, want string
	}{
		{"without a client certificate", "", ""},
		{"with one", fmt.Sprintf("\n    credentials: {client_tls: {cert: %q, private_key: %q}}", certFile, keyFile), "b@1"},
	} {
		cfg, err := ParseConfig([]byte(fmt.Sprintf("services:\n  s:\n    url: %q\n    tls: {ca_cert: %q}%s\nbundles: {b: {service: s, resource: b.tar.gz}}\n",
			web.URL, caFile, c.credentials)))
		require.NoError(t, err, c.name)
		defer cfg.Close()
		e := NewEmptyEngine("b")
		status := &statusLog{}
		follow(t, cfg.Sources[0], e, status)
		st := waitFor(t, c.name, status, func(s Status) bool { return s.Activations+s.DownloadErrors > 0 })
		if st.ActiveRevision != c.want {
			t.Fatalf("%s: active %q, want %q (%v)", c.name, st.ActiveRevision, c.want, st.LastError)
		}
		if c.want == "" {
			var derr *DownloadError
			require.ErrorAs(t, st.LastError, &derr, c.name)
		}
	}
}
