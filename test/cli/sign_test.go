//go:build integration

package cli

// Bundle signing and verification end to end: governor signs and verifies,
// and upstream opa (at go.mod's version) agrees with it both ways.
//
// Upstream's verifier here is `opa build --bundle FILE --verification-key KEY
// -o OUT`: given a verification key, opa build verifies a signed input bundle
// (and refuses an unsigned one) before it writes anything. opa eval and opa
// inspect have no verification flags, and opa run would start a REPL.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const signedDir = "policies/reactive" // the shipped bundle, relative to repoRoot

// key is a signing key and its verification key, as files, for one algorithm.
type key struct {
	alg       string
	priv, pub string // PEM files; for HS256 both are the same secret file
}

// newKey writes a fresh key for alg (RS256, RS256/pkcs8, ES256 or HS256).
func newKey(t *testing.T, alg string) key {
	t.Helper()
	dir := t.TempDir()
	k := key{alg: strings.TrimSuffix(alg, "/pkcs8"), priv: filepath.Join(dir, "private.pem"), pub: filepath.Join(dir, "public.pem")}
	var privBlock *pem.Block
	var public any
	switch alg {
	case "RS256", "RS256/pkcs8":
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		privBlock, public = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}, rk.Public()
		if alg == "RS256/pkcs8" {
			der, err := x509.MarshalPKCS8PrivateKey(rk)
			require.NoError(t, err)
			privBlock = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
	case "ES256":
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalECPrivateKey(ek)
		require.NoError(t, err)
		privBlock, public = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}, ek.Public()
	case "HS256":
		secret := make([]byte, 32)
		_, err := rand.Read(secret)
		require.NoError(t, err)
		k.pub = k.priv
		require.NoError(t, os.WriteFile(k.priv, []byte(base64.RawURLEncoding.EncodeToString(secret)), 0o600))
		return k
	default:
		t.Fatalf("no key for %s", alg)
	}
	der, err := x509.MarshalPKIXPublicKey(public)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(k.priv, pem.EncodeToMemory(privBlock), 0o600))
	require.NoError(t, os.WriteFile(k.pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644))
	return k
}

// governorSign builds signedDir into a new tarball signed with k.
func governorSign(t *testing.T, k key, extra ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "reactive.tar.gz")
	res := run(t, "", governor, append([]string{"bundle", "build", signedDir, "-o", out, "--signing-key", k.priv, "--signing-alg", k.alg}, extra...)...)
	require.Equal(t, 0, res.code, res.stderr)
	return out
}

// opaSign builds signedDir into a new tarball signed with k by upstream opa.
func opaSign(t *testing.T, k key) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "reactive.tar.gz")
	res := run(t, "", opaBinary, "build", "--bundle", signedDir, "-o", out, "--signing-key", k.priv, "--signing-alg", k.alg)
	require.Equal(t, 0, res.code, res.stderr)
	return out
}

// governorVerify runs governor bundle verify on file with k's public half.
func governorVerify(t *testing.T, file string, k key, extra ...string) result {
	t.Helper()
	return run(t, "", governor, append([]string{"bundle", "verify", file, "--verification-key", k.pub, "--verification-alg", k.alg}, extra...)...)
}

// opaVerify has upstream opa verify file with k's public half (see the top
// of the file). -o goes to a temporary directory: opa build's default
// output is ./bundle.tar.gz, in the repository.
func opaVerify(t *testing.T, file string, k key, extra ...string) result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "verified.tar.gz")
	return run(t, "", opaBinary, append([]string{"build", "--bundle", file, "-o", out, "--verification-key", k.pub, "--signing-alg", k.alg}, extra...)...)
}

func assertVerified(t *testing.T, res result, alg string) {
	t.Helper()
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "verified reactive@reactive-4")
	assert.Contains(t, res.stdout, "signature verified with key id default ("+alg+")")
}

// eachTarFile calls fn with each file of a bundle tarball, in order.
func eachTarFile(t *testing.T, file string, fn func(hdr *tar.Header, body []byte)) {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		fn(hdr, body)
	}
}

// rewriteTarball copies a bundle tarball, passing each file's contents
// through edit and appending extra files. .signatures.json is copied as it
// was signed, which is what an attacker without the key can do.
func rewriteTarball(t *testing.T, src string, edit func(name string, body []byte) []byte, extra map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	write := func(hdr *tar.Header, body []byte) {
		hdr.Size = int64(len(body))
		require.NoError(t, tw.WriteHeader(hdr))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	eachTarFile(t, src, func(hdr *tar.Header, body []byte) { write(hdr, edit(hdr.Name, body)) })
	for name, body := range extra {
		write(&tar.Header{Name: name, Mode: 0o600, Typeflag: tar.TypeReg}, []byte(body))
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	out := filepath.Join(t.TempDir(), "tampered.tar.gz")
	require.NoError(t, os.WriteFile(out, buf.Bytes(), 0o644))
	return out
}

// jwtHeader is the decoded header of the one JWT in a tarball's .signatures.json.
func jwtHeader(t *testing.T, file string) map[string]any {
	t.Helper()
	var sigs []byte
	eachTarFile(t, file, func(hdr *tar.Header, body []byte) {
		if strings.TrimPrefix(hdr.Name, "/") == ".signatures.json" {
			sigs = body
		}
	})
	require.NotNil(t, sigs, "no .signatures.json in %s", file)
	var doc struct{ Signatures []string }
	require.NoError(t, json.Unmarshal(sigs, &doc))
	require.Len(t, doc.Signatures, 1)
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(doc.Signatures[0], ".")[0])
	require.NoError(t, err)
	var hdr map[string]any
	require.NoError(t, json.Unmarshal(raw, &hdr))
	return hdr
}

// Governor's signature is one upstream opa accepts, for each kind of key:
// the tarball is interchangeable with `opa build --signing-key`'s.
func TestSignedByGovernorVerifiesInGovernorAndOPA(t *testing.T) {
	for _, alg := range []string{"RS256", "RS256/pkcs8", "ES256", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, alg)
			out := filepath.Join(t.TempDir(), "reactive.tar.gz")
			res := run(t, "", governor, "bundle", "build", signedDir, "-o", out, "--signing-key", k.priv, "--signing-alg", k.alg)
			require.Equal(t, 0, res.code, res.stderr)
			assert.Contains(t, res.stdout, "signed ("+k.alg+", key id default)")
			assert.Equal(t, map[string]any{"alg": k.alg, "kid": "default", "typ": "JWT"}, jwtHeader(t, out))

			assertVerified(t, governorVerify(t, out, k), k.alg)
			up := opaVerify(t, out, k)
			assert.Equal(t, 0, up.code, "upstream opa refuses governor's signature: %s", up.stderr)
		})
	}
}

// The other way: what `opa build --signing-key` signs, governor verifies.
func TestSignedByOPAVerifiesInGovernor(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, alg)
			assertVerified(t, governorVerify(t, opaSign(t, k), k), k.alg)
		})
	}
}

// Every way a bundle can fail verification is exit 1 with one line saying
// why; where the failure is the bundle's, upstream opa refuses it as well.
func TestVerifyRefuses(t *testing.T) {
	a, b := newKey(t, "RS256"), newKey(t, "RS256")
	ec, hs := newKey(t, "ES256"), newKey(t, "HS256")
	signed := governorSign(t, a)

	unsigned := filepath.Join(t.TempDir(), "unsigned.tar.gz")
	res := run(t, "", governor, "bundle", "build", signedDir, "-o", unsigned)
	require.Equal(t, 0, res.code, res.stderr)

	// A policy file changed after signing: a rule slipped in that parses and
	// compiles, so that only the signature can catch it.
	changed := rewriteTarball(t, signed, func(name string, body []byte) []byte {
		if strings.HasSuffix(name, "/reactive.rego") {
			require.Contains(t, string(body), "package governor.reactive")
			return bytes.Replace(body, []byte("package governor.reactive"), []byte("package governor.reactive\n\nbackdoor := true"), 1)
		}
		return body
	}, nil)
	// A file added after signing, which the signature does not list.
	added := rewriteTarball(t, signed, func(_ string, body []byte) []byte { return body },
		map[string]string{"/policies/reactive/extra.rego": "package governor.reactive\n\nextra := true\n"})
	for _, f := range []string{changed, added} {
		res := run(t, "", opaBinary, "inspect", f)
		require.Equal(t, 0, res.code, "the tampered tarball must read fine unverified: %s", res.stderr)
	}

	garbage := key{alg: "RS256", pub: filepath.Join(t.TempDir(), "garbage.pem")}
	require.NoError(t, os.WriteFile(garbage.pub, []byte("not a key\n"), 0o644))
	missing := key{alg: "RS256", pub: filepath.Join(t.TempDir(), "nope.pem")}

	const failed = "failed signature verification: "
	cases := []struct {
		name   string
		file   string
		key    key
		reason string // in governor's one line
		// upstream: the fault is the bundle's, so upstream opa must refuse
		// it too, for the same reason in the same words
		upstream bool
		// ours, when set, is governor's words where they differ from OPA's
		ours string
	}{
		{"unsigned", unsigned, a, "bundle missing .signatures.json file", true, "unsigned.tar.gz is unsigned (no .signatures.json): sign it with 'governor bundle build --signing-key'"},
		{"signed with another key", signed, b, "failed to verify JWT signature: crypto/rsa: verification error", true, ""},
		{"policy changed after signing", changed, a, "policies/reactive/reactive.rego: digest mismatch", true, ""},
		{"file added after signing", added, a, "file policies/reactive/extra.rego not included in bundle signature", true, ""},
		{"ECDSA key for an RSA signature", signed, ec, "failed to verify JWT signature", true, ""},
		{"wrong HMAC secret", governorSign(t, newKey(t, "HS256")), hs, "failed to verify JWT signature: invalid HMAC signature", true, ""},
		{"key file missing", signed, missing, "verification key: open " + missing.pub + ": no such file or directory", false, ""},
		{"key file not a key", signed, garbage, "verification key " + garbage.pub + ": no PEM key in it", false, ""},
		{"bundle missing", filepath.Join(t.TempDir(), "nope.tar.gz"), a, "cannot load bundle", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			why := tc.reason
			if tc.upstream {
				why = failed + why
			}
			if tc.ours != "" {
				why = tc.ours
			}
			assertOneLineFailure(t, governorVerify(t, tc.file, tc.key), 1, why)
			if tc.upstream {
				up := opaVerify(t, tc.file, tc.key)
				assert.Equal(t, 1, up.code, "upstream opa accepts it: %s", up.stdout)
				// opa build reports errors on stdout.
				assert.Contains(t, up.stdout, "error: load error: bundle "+tc.file)
				assert.Contains(t, up.stdout, tc.reason)
			}
		})
	}

	assertOneLineFailure(t, run(t, "", governor, "bundle", "verify", signed), 1, "is signed: give --verification-key to verify its signature")
	res = run(t, "", governor, "bundle", "verify", unsigned)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "compiles; unsigned (no .signatures.json)")
}

// --key-id is recorded as the JWT's kid. On verify it names the configured
// key, and, as in OPA, a configured key id takes precedence over the
// bundle's kid: the key decides, not the name. Upstream opa build
// --verification-key-id behaves the same, so governor must not differ.
func TestVerifyKeyIDNamesTheKeyAsInOPA(t *testing.T) {
	a := newKey(t, "RS256")
	signed := governorSign(t, a, "--key-id", "build-key")
	assert.Equal(t, "build-key", jwtHeader(t, signed)["kid"])

	for _, id := range []string{"build-key", "default", "other"} {
		res := governorVerify(t, signed, a, "--key-id", id)
		require.Equal(t, 0, res.code, res.stderr)
		assert.Contains(t, res.stdout, "signature verified with key id "+id+" (RS256)")
		up := opaVerify(t, signed, a, "--verification-key-id", id)
		assert.Equal(t, 0, up.code, up.stderr)
	}
	// Whatever the key id, another key is refused.
	b := newKey(t, "RS256")
	assertOneLineFailure(t, governorVerify(t, signed, b, "--key-id", "build-key"), 1, "failed to verify JWT signature")
}

// Signing flags without a key, and keys that cannot sign, fail before
// anything is written.
func TestBuildRefusesToSignWithoutAUsableKey(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key\n"), 0o600))
	missing := filepath.Join(dir, "nope.pem")
	out := filepath.Join(dir, "reactive.tar.gz")

	cases := []struct {
		name string
		args []string
		why  string
	}{
		{"--signing-alg alone", []string{"--signing-alg", "ES256"}, "--signing-alg and --key-id need --signing-key"},
		{"--key-id alone", []string{"--key-id", "k1"}, "--signing-alg and --key-id need --signing-key"},
		{"key file missing", []string{"--signing-key", missing}, "signing key: open " + missing + ": no such file or directory"},
		{"key file not a key", []string{"--signing-key", garbage}, "signing key " + garbage + ": no PEM key in it"},
		{"RSA key for ES256", []string{"--signing-key", newKey(t, "RS256").priv, "--signing-alg", "ES256"}, "failed to sign payload with ES256: jwsbb.Sign: invalid key type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"bundle", "build", signedDir, "-o", out}, tc.args...)
			assertOneLineFailure(t, run(t, "", governor, args...), 1, tc.why)
			assert.NoFileExists(t, out)
		})
	}
}
