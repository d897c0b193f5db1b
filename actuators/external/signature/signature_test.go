package signature

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	key  = []byte("0123456789abcdef0123456789abcdef")
	at   = time.UnixMilli(1764745200123)
	body = []byte(`{"settings":{"rate":40}}`)
)

// The signature is the one the README's recipe computes with openssl:
// printf '%s' '1764745200123.{"settings":{"rate":40}}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
func TestSignMatchesTheRecipe(t *testing.T) {
	h := http.Header{}
	Sign(h, key, at, body)
	assert.Equal(t, "1764745200123", h.Get(TimestampHeader))
	assert.Equal(t, "sha256=a062f99e733815de9ecd3debc3a0921a7007938de38a46ccf0e30b16d7ba5d65", h.Get(SignatureHeader))
}

func TestVerify(t *testing.T) {
	signed := func() http.Header {
		h := http.Header{}
		Sign(h, key, at, body)
		return h
	}
	window := 30 * time.Second
	require.NoError(t, Verify(signed(), key, body, at, window))
	assert.NoError(t, Verify(signed(), key, body, at.Add(window), window), "at the window's edge")
	assert.NoError(t, Verify(signed(), key, body, at.Add(-window), window), "the sender's clock ahead, within the window")

	assert.ErrorIs(t, Verify(signed(), key, []byte(`{"settings":{"rate":41}}`), at, window), ErrBadSignature, "another body")
	assert.ErrorIs(t, Verify(signed(), []byte("another key, also 32 bytes long!"), body, at, window), ErrBadSignature, "another key")
	assert.ErrorIs(t, Verify(signed(), key, body, at.Add(window+time.Millisecond), window), ErrStale, "too old")
	assert.ErrorIs(t, Verify(signed(), key, body, at.Add(-window-time.Millisecond), window), ErrStale, "too far ahead")

	moved := signed()
	moved.Set(TimestampHeader, "1764745260123") // a fresh timestamp on an old signature
	assert.ErrorIs(t, Verify(moved, key, body, at.Add(time.Minute), window), ErrBadSignature)

	for name, edit := range map[string]func(http.Header){
		"no timestamp":      func(h http.Header) { h.Del(TimestampHeader) },
		"no signature":      func(h http.Header) { h.Del(SignatureHeader) },
		"timestamp in text": func(h http.Header) { h.Set(TimestampHeader, "yesterday") },
		"other algorithm":   func(h http.Header) { h.Set(SignatureHeader, "sha1=abcd") },
		"not hex":           func(h http.Header) { h.Set(SignatureHeader, "sha256=xyz") },
	} {
		h := signed()
		edit(h)
		err := Verify(h, key, body, at, window)
		assert.Error(t, err, name)
		if name == "no timestamp" || name == "no signature" {
			assert.ErrorIs(t, err, ErrUnsigned, name)
		} else {
			assert.ErrorIs(t, err, ErrBadSignature, name)
		}
	}
}
