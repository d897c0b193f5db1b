package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/testkeys"
)

// buildSigned builds the labelled bundle signed with k.
func buildSigned(t *testing.T, k testkeys.Pair) string {
	t.Helper()
	sc, err := NewSigningConfig(k.Private, k.Alg)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "policy.tar.gz")
	_, err = Build(context.Background(), BuildOptions{Dir: labelled(t, "r1"), Output: out, Signing: sc})
	require.NoError(t, err)
	return out
}

// rewriteTarball replaces, in a copy of the tarball src, the body of every
// file whose name ends with suffix by edit's result.
func rewriteTarball(t *testing.T, src, suffix string, edit func(string) string) string {
	t.Helper()
	f, err := os.Open(src)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	changed := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		if strings.HasSuffix(h.Name, suffix) {
			body = []byte(edit(string(body)))
			changed++
		}
		h.Size = int64(len(body))
		require.NoError(t, tw.WriteHeader(h))
		_, err = tw.Write(body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.Equal(t, 1, changed, "files ending with %s in %s", suffix, src)
	out := filepath.Join(t.TempDir(), "policy.tar.gz")
	require.NoError(t, os.WriteFile(out, buf.Bytes(), 0o644))
	return out
}

func verification(t *testing.T, k testkeys.Pair) LoadOptions {
	t.Helper()
	vc, err := NewVerificationConfig(k.Public, k.Alg, "")
	require.NoError(t, err)
	return LoadOptions{Verification: vc}
}

func requireVerificationError(t *testing.T, err error, reason string) {
	t.Helper()
	var ve *VerificationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "policy", ve.Bundle)
	assert.Contains(t, ve.Reason, reason)
	assert.Contains(t, err.Error(), "bundle policy (")
	assert.Contains(t, err.Error(), "failed signature verification: ")
	assert.Contains(t, err.Error(), reason)
}

func TestSignedBundlesVerifyWithTheirKey(t *testing.T) {
	ctx := context.Background()
	for _, k := range []testkeys.Pair{testkeys.RSA(t), testkeys.ECDSA(t), {Alg: "HS256", Private: "a shared secret", Public: "a shared secret"}} {
		t.Run(k.Alg, func(t *testing.T) {
			signed := buildSigned(t, k)
			rev, err := LoadWithOptions(ctx, signed, verification(t, k))
			require.NoError(t, err)
			assert.Equal(t, "policy@r1", rev.String())
			assert.Len(t, rev.Bundle().Signatures.Signatures, 1)
			// The decision still works on the verified revision.
			_, err = rev.Prepare(ctx, "t/decision")
			require.NoError(t, err)
		})
	}
}

func TestVerificationRefusesWhatTheKeyDidNotSign(t *testing.T) {
	ctx := context.Background()
	k, other := testkeys.RSA(t), testkeys.RSA(t)
	signed := buildSigned(t, k)

	unsigned := filepath.Join(t.TempDir(), "policy.tar.gz")
	_, err := Build(ctx, BuildOptions{Dir: labelled(t, "r1"), Output: unsigned})
	require.NoError(t, err)
	_, err = LoadWithOptions(ctx, unsigned, verification(t, k))
	requireVerificationError(t, err, "bundle missing .signatures.json file")

	// A directory with no .signatures.json is unsigned too.
	_, err = LoadVerified(ctx, labelled(t, "r1"), verification(t, k).Verification)
	var ve *VerificationError
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.Reason, "bundle missing .signatures.json file")

	_, err = LoadWithOptions(ctx, signed, verification(t, other))
	requireVerificationError(t, err, "failed to verify JWT signature")

	tampered := rewriteTarball(t, signed, "p.rego", func(s string) string {
		return strings.Replace(s, `label := "r1"`, `label := "evil"`, 1)
	})
	_, err = LoadWithOptions(ctx, tampered, verification(t, k))
	requireVerificationError(t, err, "digest mismatch")
	// Without verification, the tampered bundle reads: it is the signature
	// that refuses it, not its contents.
	_, err = LoadWithOptions(ctx, tampered, LoadOptions{Verification: nil})
	assert.ErrorContains(t, err, "verification key not provided")

	badSig := rewriteTarball(t, signed, ".signatures.json", func(s string) string {
		i := strings.LastIndex(s, ".")
		return s[:i+1] + "AAAA" + s[i+5:]
	})
	_, err = LoadWithOptions(ctx, badSig, verification(t, k))
	requireVerificationError(t, err, "failed to verify JWT signature")

	// A key id the signature does not name and no key configured for it.
	vc, err := NewVerificationConfig(k.Public, "RS256", "")
	require.NoError(t, err)
	vc.KeyID = ""
	vc.PublicKeys = map[string]*bundle.KeyConfig{"someone-else": vc.PublicKeys[DefaultKeyID]}
	_, err = LoadWithOptions(ctx, signed, LoadOptions{Verification: vc})
	requireVerificationError(t, err, "verification key corresponding to ID default not found")
}

func TestLoadWithoutKeysBehavesAsBefore(t *testing.T) {
	ctx := context.Background()
	unsigned := filepath.Join(t.TempDir(), "policy.tar.gz")
	_, err := Build(ctx, BuildOptions{Dir: labelled(t, "r1"), Output: unsigned})
	require.NoError(t, err)
	for _, load := range []func() (*Revision, error){
		func() (*Revision, error) { return Load(ctx, unsigned) },
		func() (*Revision, error) { return LoadWithOptions(ctx, unsigned, LoadOptions{}) },
	} {
		rev, err := load()
		require.NoError(t, err)
		assert.Equal(t, "policy@r1", rev.String())
	}
	_, err = LoadVerified(ctx, unsigned, nil)
	var ve *VerificationError
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.Reason, "no verification key configured")

	// With a key configured, an unsigned bundle is refused before it is
	// compiled: its contents are never looked at.
	broken := writeBundle(t, map[string]string{".manifest": `{"revision": "r1"}`, "p.rego": "package t\n\ndecision := nope(1)\n"})
	_, err = LoadWithOptions(ctx, broken, verification(t, testkeys.RSA(t)))
	assert.ErrorAs(t, err, &ve)
}

func TestSigningRefusesABadKey(t *testing.T) {
	_, err := NewSigningConfig("no-such-key.pem", "RS256")
	assert.ErrorContains(t, err, "signing key")
	_, err = NewVerificationConfig("", "RS256", "")
	assert.ErrorContains(t, err, "no verification key given")
}
