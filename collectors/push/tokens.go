package push

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/types"
)

// readRetry is how long a failed read of a token Secret is answered as failed before the
// Secret is read again: an outage of the API server costs it one read per Secret and second,
// not one per request.
const readRetry = time.Second

// tokens remembers the SHA-256 of the token of each push Secret read lately, so that checking
// a token costs no API request: each Secret is read when first needed, again in the background
// when a request uses it after half its TTL, and again before answering once its TTL is over
// (so a rotated or deleted token stops working within a TTL). A missing Secret, or one without
// a token, is remembered too. Concurrent reads of one Secret are one read; whatever the request
// rate, a Secret is read at most about once per half TTL.
type tokens struct {
	// read returns the token Secret key holds, nil when it does not exist or holds none.
	read func(ctx context.Context, key types.NamespacedName) ([]byte, error)
	ttl  time.Duration
	now  func() time.Time
	log  logr.Logger

	mu      sync.Mutex
	entries map[types.NamespacedName]*tokenEntry
	swept   time.Time
	reads   singleflight.Group
}

// tokenEntry is what a read of a Secret found.
type tokenEntry struct {
	sum    [sha256.Size]byte
	usable bool  // the Secret exists and holds a token
	err    error // the read failed
	// The Secret is read again in the background from refreshAt on (when used), and before
	// answering from expires on.
	refreshAt, expires time.Time
	refreshing         bool
}

func newTokens(read func(context.Context, types.NamespacedName) ([]byte, error), ttl time.Duration, now func() time.Time, log logr.Logger) *tokens {
	return &tokens{read: read, ttl: ttl, now: now, log: log, entries: map[types.NamespacedName]*tokenEntry{}, swept: now()}
}

// holds says whether Secret key holds the token whose SHA-256 is sum, comparing in constant
// time. An error is a failed read of the Secret.
func (t *tokens) holds(ctx context.Context, key types.NamespacedName, sum [sha256.Size]byte) (bool, error) {
	e, err := t.entry(ctx, key)
	if err != nil {
		return false, err
	}
	return e.usable && subtle.ConstantTimeCompare(e.sum[:], sum[:]) == 1, nil
}

// entry is what is known of Secret key: remembered while fresh, read (once, for every caller
// waiting) otherwise.
func (t *tokens) entry(ctx context.Context, key types.NamespacedName) (tokenEntry, error) {
	now := t.now()
	t.mu.Lock()
	if e := t.entries[key]; e != nil && now.Before(e.expires) {
		if e.err == nil && !now.Before(e.refreshAt) && !e.refreshing {
			e.refreshing = true
			go func() { <-t.readOnce(key) }()
		}
		found := *e
		t.mu.Unlock()
		return found, found.err
	}
	t.mu.Unlock()
	e, err := t.await(ctx, key)
	if err == nil && !now.Before(e.expires) {
		// Joined a read that ended before this call began (singleflight forgets a read just
		// after it returns): its answer expired already. Read anew, once: that read begins
		// after this call did.
		t.reads.Forget(key.String())
		e, err = t.await(ctx, key)
	}
	return e, err
}

// await is the answer of a read of Secret key, begun or joined.
func (t *tokens) await(ctx context.Context, key types.NamespacedName) (tokenEntry, error) {
	select {
	case r := <-t.readOnce(key):
		e := r.Val.(tokenEntry)
		return e, e.err
	case <-ctx.Done():
		return tokenEntry{}, ctx.Err()
	}
}

// readOnce reads Secret key, or joins the read of it under way.
func (t *tokens) readOnce(key types.NamespacedName) <-chan singleflight.Result {
	return t.reads.DoChan(key.String(), func() (any, error) { return t.fetch(key), nil })
}

// fetch reads Secret key and records what it found. A failed read leaves a fresh entry as it
// was (it is tried again a second later); with no fresh entry, the failure is what callers
// get for a second.
func (t *tokens) fetch(key types.NamespacedName) tokenEntry {
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	token, err := t.read(ctx, key)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	old := t.entries[key]
	if err != nil {
		if old != nil && old.err == nil && now.Before(old.expires) {
			t.log.Error(err, "reading a token Secret again: its last read serves until it expires", "secret", key.String())
			old.refreshing, old.refreshAt = false, now.Add(readRetry)
			return *old
		}
		e := &tokenEntry{err: err, expires: now.Add(readRetry)}
		t.entries[key] = e
		return *e
	}
	e := &tokenEntry{usable: token != nil, refreshAt: now.Add(t.ttl / 2), expires: now.Add(t.ttl)}
	if token != nil {
		e.sum = sha256.Sum256(token)
	}
	t.entries[key] = e
	return *e
}

// sweep forgets the Secrets whose entry expired (not used for a TTL), at most once per TTL.
func (t *tokens) sweep(now time.Time) {
	if now.Sub(t.swept) < t.ttl {
		return
	}
	t.swept = now
	for key, e := range t.entries {
		if !now.Before(e.expires) && !e.refreshing {
			delete(t.entries, key)
		}
	}
}
