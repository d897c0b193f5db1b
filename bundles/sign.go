package bundles

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
)

// DefaultKeyID is the key id that `opa build` and `opa run` use when none
// is given (--verification-key-id's default).
const DefaultKeyID = "default"

// LoadOptions say how to load a bundle.
type LoadOptions struct {
	// Verification, when set, makes Load verify the bundle's
	// .signatures.json with its keys (OPA's bundle verification): an
	// unsigned bundle, a bad signature, a file changed after signing or a
	// signature by a key it does not hold is a *VerificationError. Nil
	// verifies nothing, as Load does.
	Verification *bundle.VerificationConfig
	// Limits bound the bundle's files and the builtins it may call.
	Limits Limits
}

// LoadWithOptions is Load with options.
func LoadWithOptions(ctx context.Context, src string, opts LoadOptions) (*Revision, error) {
	return loadVerified(ctx, src, bundleName(src), src, opts.Verification, opts.Limits)
}

// LoadVerified loads a bundle and verifies its signature with vc; vc must
// not be nil. Which builtins it calls is not checked: that is the
// controller's to say (governor run --allow-builtin).
func LoadVerified(ctx context.Context, src string, vc *bundle.VerificationConfig) (*Revision, error) {
	if vc == nil {
		return nil, &VerificationError{Bundle: bundleName(src), Source: src, Reason: "no verification key configured"}
	}
	return LoadWithOptions(ctx, src, LoadOptions{Verification: vc, Limits: Limits{AllowBuiltins: OutsideBuiltins()}})
}

// NewVerificationConfig is OPA's verification configuration for one public
// key (PEM, or a file holding it; the secret itself for HS256/384/512) with
// its algorithm (default RS256) and key id (default "default"), as
// `opa run --verification-key` builds it.
func NewVerificationConfig(key, alg, keyID string) (*bundle.VerificationConfig, error) {
	if key == "" {
		return nil, errors.New("no verification key given")
	}
	if alg == "" {
		alg = "RS256"
	}
	if keyID == "" {
		keyID = DefaultKeyID
	}
	kc := &bundle.KeyConfig{Key: key, Algorithm: alg}
	var err error
	if !strings.HasPrefix(key, "-----BEGIN") {
		kc, err = keys.NewKeyConfig(key, alg, "")
	}
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", key, err)
	}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{keyID: kc}, keyID, "", nil), nil
}

// NewSigningConfig is OPA's signing configuration for a private key (PEM,
// or a file holding it; the secret for HS256/384/512) and algorithm
// (default RS256), as `opa build --signing-key` builds it. The key is
// checked here, so that a bad key fails before anything is built.
func NewSigningConfig(key, alg string) (*bundle.SigningConfig, error) {
	sc := bundle.NewSigningConfig(key, alg, "")
	if _, err := sc.GetPrivateKey(); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return sc, nil
}

// verificationFor is the verification configuration matching a signing
// configuration: the private key's public half (or the HMAC secret), so that
// Build can check that what it signed verifies.
func verificationFor(sc *bundle.SigningConfig, keyID string) (*bundle.VerificationConfig, error) {
	priv, err := sc.GetPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	var key string
	switch k := priv.(type) {
	case []byte:
		key = string(k)
	case crypto.Signer:
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		key = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	default:
		return nil, fmt.Errorf("signing key: unsupported key type %T", priv)
	}
	if keyID == "" {
		keyID = DefaultKeyID
	}
	kc := &bundle.KeyConfig{Key: key, Algorithm: sc.Algorithm}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{keyID: kc}, keyID, "", nil), nil
}
