// Package testkeys makes keys and certificates for tests: key pairs that
// sign and verify bundles, and a CA that issues TLS certificates to
// loopback servers and their clients.
package testkeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// Pair is a private key and its public key, PEM (PKCS#8 and PKIX), with the
// JWT algorithm they sign bundles with.
type Pair struct {
	Alg, Private, Public string
}

// RSA is a fresh 2048-bit RSA pair, for RS256.
func RSA(t testing.TB) Pair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pair(t, "RS256", k, &k.PublicKey)
}

// ECDSA is a fresh P-256 pair, for ES256.
func ECDSA(t testing.TB) Pair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pair(t, "ES256", k, &k.PublicKey)
}

func pair(t testing.TB, alg string, priv, pub any) Pair {
	t.Helper()
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{
		Alg:     alg,
		Private: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		Public:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
	}
}

// Cert is a certificate and its P-256 key, parsed and PEM (the key as
// SEC 1, "EC PRIVATE KEY").
type Cert struct {
	X509            *x509.Certificate
	Key             *ecdsa.PrivateKey
	CertPEM, KeyPEM []byte
}

var serial atomic.Int64

// NewCA is a self-signed CA, valid for an hour either side of now.
func NewCA(t testing.TB, name string) *Cert {
	t.Helper()
	return issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil)
}

// Server is a certificate the CA issues to a server on 127.0.0.1.
func (ca *Cert) Server(t testing.TB, name string) *Cert {
	t.Helper()
	return issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca)
}

// Client is a certificate the CA issues to a TLS client.
func (ca *Cert) Client(t testing.TB, name string) *Cert {
	t.Helper()
	return issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca)
}

// issue signs tmpl with ca, or with its own key when ca is nil.
func issue(t testing.TB, tmpl *x509.Certificate, ca *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.X509, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{X509: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}
