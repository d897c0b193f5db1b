package testkeys

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// The CA's certificates verify for their use, and their PEM pairs load as
// Go's TLS loads them.
func TestIssuedCertificatesVerify(t *testing.T) {
	ca := NewCA(t, "ca")
	pool := x509.NewCertPool()
	pool.AddCert(ca.X509)
	for _, c := range []struct {
		cert  *Cert
		usage x509.ExtKeyUsage
		ip    string
	}{{ca.Server(t, "server"), x509.ExtKeyUsageServerAuth, "127.0.0.1"}, {ca.Client(t, "client"), x509.ExtKeyUsageClientAuth, ""}} {
		opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{c.usage}, DNSName: c.ip}
		if _, err := c.cert.X509.Verify(opts); err != nil {
			t.Fatalf("%s: %v", c.cert.X509.Subject.CommonName, err)
		}
		if _, err := tls.X509KeyPair(c.cert.CertPEM, c.cert.KeyPEM); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewCA(t, "other").Server(t, "server").X509.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Fatal("another CA's certificate verified")
	}
	for _, p := range []Pair{RSA(t), ECDSA(t)} {
		for _, s := range []string{p.Private, p.Public} {
			if b, _ := pem.Decode([]byte(s)); b == nil {
				t.Fatalf("%s: not PEM: %q", p.Alg, s)
			}
		}
	}
}
