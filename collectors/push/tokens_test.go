package push

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"
)

// secretStore stands for the API server: the token each Secret holds (absent: no Secret), the
// reads it answered, and a failure to answer with.
type secretStore struct {
	mu     sync.Mutex
	tokens map[string]string
	reads  map[string]int
	fail   error
	gate   chan struct{} // when set, reads wait for it
}

func (s *secretStore) read(_ context.Context, key types.NamespacedName) ([]byte, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[key.Name]++
	if s.fail != nil {
		return nil, s.fail
	}
	if tok, ok := s.tokens[key.Name]; ok {
		return []byte(tok), nil
	}
	return nil, nil
}

func (s *secretStore) set(name, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[name] = token
}

func (s *secretStore) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[name]
}

func newStore() *secretStore {
	return &secretStore{tokens: map[string]string{"s": "A"}, reads: map[string]int{}}
}

func key(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

func sum(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

func holds(t *testing.T, tk *tokens, secret, token string) bool {
	t.Helper()
	ok, err := tk.holds(context.Background(), key(secret), sum(token))
	require.NoError(t, err)
	return ok
}

// Checks are served from memory: a Secret is read once, whatever the tokens tried, and a
// missing Secret is remembered as missing.
func TestTokensServedFromMemory(t *testing.T) {
	store, c := newStore(), newClock()
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	assert.True(t, holds(t, tk, "s", "A"))
	for range 1000 {
		assert.False(t, holds(t, tk, "s", "guess"))
		assert.False(t, holds(t, tk, "missing", "A"))
	}
	assert.True(t, holds(t, tk, "s", "A"))
	assert.Equal(t, 1, store.count("s"))
	assert.Equal(t, 1, store.count("missing"))
}

// A rotated token takes effect within the TTL: used after half of it, the Secret is read again
// in the background (the old token serves meanwhile); not used until it expires, it is read
// again before answering.
func TestTokensRotation(t *testing.T) {
	store, c := newStore(), newClock()
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	require.True(t, holds(t, tk, "s", "A"))
	store.set("s", "B")

	c.advance(10 * time.Second)
	assert.True(t, holds(t, tk, "s", "A"), "fresh: not read again")
	assert.Equal(t, 1, store.count("s"))

	c.advance(6 * time.Second) // past half the TTL
	assert.True(t, holds(t, tk, "s", "A"), "the old token serves while the Secret is read again")
	require.Eventually(t, func() bool { return holds(t, tk, "s", "B") }, 5*time.Second, time.Millisecond)
	assert.False(t, holds(t, tk, "s", "A"))
	assert.Equal(t, 2, store.count("s"))

	store.set("s", "C")
	c.advance(31 * time.Second) // expired: read before answering
	assert.True(t, holds(t, tk, "s", "C"))
	assert.False(t, holds(t, tk, "s", "B"))
	assert.Equal(t, 3, store.count("s"))
}

// Entries not used for a TTL are forgotten.
func TestTokensForgetUnused(t *testing.T) {
	store, c := newStore(), newClock()
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	for _, name := range []string{"a", "b", "c"} {
		holds(t, tk, name, "A")
	}
	c.advance(31 * time.Second)
	holds(t, tk, "s", "A")
	assert.Len(t, tk.entries, 1)
}

// Callers waiting for the same Secret share one read.
func TestTokensOneReadForConcurrentCallers(t *testing.T) {
	store, c := newStore(), newClock()
	store.gate = make(chan struct{})
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { assert.True(t, holds(t, tk, "s", "A")) })
	}
	time.Sleep(50 * time.Millisecond) // let them all wait on the read
	close(store.gate)
	wg.Wait()
	assert.Equal(t, 1, store.count("s"))
}

// A failed read is the answer for a second, without asking again; then the Secret is read
// again. A failed background read leaves the fresh entry serving.
func TestTokensReadFailures(t *testing.T) {
	store, c := newStore(), newClock()
	store.fail = errors.New("connection refused")
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	for range 10 {
		_, err := tk.holds(context.Background(), key("s"), sum("A"))
		assert.EqualError(t, err, "connection refused")
	}
	assert.Equal(t, 1, store.count("s"))
	c.advance(readRetry)
	store.fail = nil
	assert.True(t, holds(t, tk, "s", "A"))
	assert.Equal(t, 2, store.count("s"))

	store.mu.Lock()
	store.fail = errors.New("connection refused")
	store.mu.Unlock()
	c.advance(20 * time.Second)
	assert.True(t, holds(t, tk, "s", "A"), "the background read fails; the last one serves")
	require.Eventually(t, func() bool { return store.count("s") == 3 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		return !tk.entries[key("s")].refreshing
	}, 5*time.Second, time.Millisecond)
	assert.True(t, holds(t, tk, "s", "A"), "not tried again within a second")
	assert.Equal(t, 3, store.count("s"))
}

// A caller that gives up does not wait for the read.
func TestTokensCallerGivesUp(t *testing.T) {
	store, c := newStore(), newClock()
	store.gate = make(chan struct{})
	defer close(store.gate)
	tk := newTokens(store.read, 30*time.Second, c.now, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tk.holds(ctx, key("s"), sum("A"))
	assert.ErrorIs(t, err, context.Canceled)
}
