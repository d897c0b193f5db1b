package push

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a token bucket per key (a client address, a loop), made on first use. A bucket
// that has filled up again is the same as a new one, so such buckets are dropped now and
// then: memory follows the keys active lately, not every key ever seen.
type limiters struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

// newLimiters allows perSecond requests a second per key, in bursts of up to twice as many
// (at least 1); perSecond 0 allows everything.
func newLimiters(perSecond float64, now func() time.Time) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{limit: rate.Limit(perSecond), burst: max(1, int(math.Ceil(2*perSecond))), now: now,
		buckets: map[string]*rate.Limiter{}, swept: now()}
}

// allow takes a token from key's bucket; when it is empty, it takes nothing and says how long
// until a token is there.
func (l *limiters) allow(key string) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return wait, false
	}
	return 0, true
}

// sweep drops the full buckets, at most once per refill time (a burst's worth of tokens).
func (l *limiters) sweep(now time.Time) {
	refill := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	if now.Sub(l.swept) < max(refill, time.Second) {
		return
	}
	l.swept = now
	for key, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, key)
		}
	}
}

// clientKey is who sent a request, for the per-client limit: its IP address, or for IPv6 its
// /64 (one host usually holds a whole /64, and could spread a flood over it).
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// retryAfterSeconds is a Retry-After header's value for a wait: whole seconds, rounded up, at
// least 1.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}
