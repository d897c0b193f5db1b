package bundles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/testkeys"
)

// TestFollowClientTLS: a bundle server that requires a client certificate
// serves a follower configured with one (OPA's client_tls credentials and
// tls.ca_cert), and refuses one without it.
func TestFollowClientTLS(t *testing.T) {
	ca := testkeys.NewCA(t, "bundles-ca")
	server, client := ca.Server(t, "bundles"), ca.Client(t, "governor")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", ca.CertPEM), write("client.pem", client.CertPEM), write("client-key.pem", client.KeyPEM)

	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	web := httptest.NewUnstartedServer(srv)
	pair, err := tls.X509KeyPair(server.CertPEM, server.KeyPEM)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.X509)
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
		_, status := follow(t, parseSource(t, fmt.Sprintf("services:\n  s:\n    url: %q\n    tls: {ca_cert: %q}%s\nbundles: {b: {service: s, resource: b.tar.gz}}\n",
			web.URL, caFile, c.credentials)))
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
