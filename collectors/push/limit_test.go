package push

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// clock is a settable clock for tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)} }

// A key gets its rate in bursts of twice as many; over it, nothing is taken and the wait is
// told; keys do not share.
func TestLimiters(t *testing.T) {
	c := newClock()
	l := newLimiters(2, c.now)
	for i := range 4 {
		_, ok := l.allow("a")
		assert.True(t, ok, "request %d of the burst of 4", i+1)
	}
	wait, ok := l.allow("a")
	assert.False(t, ok)
	assert.Equal(t, 500*time.Millisecond, wait)
	assert.Equal(t, 1, retryAfterSeconds(wait))
	_, ok = l.allow("b")
	assert.True(t, ok, "another key has its own bucket")

	c.advance(500 * time.Millisecond)
	_, ok = l.allow("a")
	assert.True(t, ok, "a token again after 1/rate")
	_, ok = l.allow("a")
	assert.False(t, ok, "refused requests took nothing, and there was one token")
}

// A slow rate gives a Retry-After of more than a second.
func TestLimitersRetryAfter(t *testing.T) {
	c := newClock()
	l := newLimiters(0.2, c.now) // one every 5 s, burst 1
	_, ok := l.allow("a")
	assert.True(t, ok)
	wait, ok := l.allow("a")
	assert.False(t, ok)
	assert.Equal(t, 5, retryAfterSeconds(wait))
}

// Rate 0 is no limit.
func TestLimitersOff(t *testing.T) {
	l := newLimiters(0, time.Now)
	for range 1000 {
		_, ok := l.allow("a")
		assert.True(t, ok)
	}
}

// Buckets that filled up again are forgotten: memory follows the keys active lately.
func TestLimitersForgetIdleKeys(t *testing.T) {
	c := newClock()
	l := newLimiters(10, c.now)
	for i := range 100 {
		l.allow(string(rune('a' + i)))
	}
	assert.Len(t, l.buckets, 100)
	c.advance(3 * time.Second) // a burst of 20 refills in 2 s
	l.allow("z")
	assert.Len(t, l.buckets, 1)
}

// The per-client key is the address, an IPv6 address's /64, an IPv4-mapped address as IPv4.
func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.0.1:5555":              "10.0.0.1",
		"[2001:db8:1:2:aaaa::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:80":  "2001:db8:1:2::/64",
		"[::ffff:10.0.0.1]:1":        "10.0.0.1",
		"[fe80::1%eth0]:1":           "fe80::/64",
		"pipe":                       "pipe",
	} {
		assert.Equal(t, want, clientKey(addr), addr)
	}
}
