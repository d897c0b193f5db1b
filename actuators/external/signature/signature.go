// Package signature is how Governor signs the requests it sends to a managed system outside
// Kubernetes (an External target), and how that system verifies them: an HMAC-SHA256, with a
// key both hold, of the request's timestamp and body.
//
// The sender sets two headers:
//
//	X-Governor-Timestamp: 1764745200123                  (Unix time in milliseconds)
//	X-Governor-Signature: sha256=<hex of HMAC-SHA256(key, timestamp + "." + body)>
//
// The receiver (Verify does all of this) recomputes the HMAC over the timestamp header, a dot
// and the body exactly as received, compares it in constant time, and refuses a timestamp
// further than its window from its own clock. Within the window, a request seen before is a
// replay: the receiver remembers the signatures it accepted for as long as the window and
// refuses one it has seen. Retries of one change carry a new timestamp (so a new signature)
// and the same Idempotency-Key header: a receiver that has applied that key answers it again
// without applying it twice.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed request.
const (
	TimestampHeader = "X-Governor-Timestamp"
	SignatureHeader = "X-Governor-Signature"
)

// prefix names the algorithm in the signature header.
const prefix = "sha256="

// MinKeyBytes is the shortest key accepted: HMAC-SHA256's output size.
const MinKeyBytes = 32

// Sign sets the timestamp (at now) and signature headers of a request whose body is body.
func Sign(h http.Header, key []byte, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	h.Set(TimestampHeader, ts)
	h.Set(SignatureHeader, prefix+hex.EncodeToString(mac(key, ts, body)))
}

func mac(key []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// The ways a request fails verification.
var (
	ErrUnsigned     = errors.New("the request is not signed: " + TimestampHeader + " or " + SignatureHeader + " is missing")
	ErrBadSignature = errors.New("the signature does not match the body and timestamp")
	ErrStale        = errors.New("the timestamp is outside the accepted window")
)

// Verify checks a received request's signature headers against its body and key, and its
// timestamp against now: at most window away. It does not detect replays within the window:
// the receiver remembers the signatures it accepted (the header's value) for that long.
func Verify(h http.Header, key []byte, body []byte, now time.Time, window time.Duration) error {
	ts, sig := h.Get(TimestampHeader), h.Get(SignatureHeader)
	if ts == "" || sig == "" {
		return ErrUnsigned
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not Unix milliseconds", ErrBadSignature, TimestampHeader, ts)
	}
	got, err := hex.DecodeString(strings.TrimPrefix(sig, prefix))
	if err != nil || !strings.HasPrefix(sig, prefix) {
		return fmt.Errorf("%w: %s is not sha256=<hex>", ErrBadSignature, SignatureHeader)
	}
	if !hmac.Equal(got, mac(key, ts, body)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.UnixMilli(ms)); d > window || d < -window {
		return fmt.Errorf("%w: %s from now, the window is %s", ErrStale, d.Round(time.Millisecond), window)
	}
	return nil
}
