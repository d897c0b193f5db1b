// Package hubble is Governor's Hubble collector: it streams flows from Hubble Relay over the
// Observer gRPC API and keeps, per filter and window length, a sliding window of the latency
// of L7 HTTP responses (latency_ns), from which each tick reads the jitter, percentiles,
// mean, drops and error rate.
//
// One stream per distinct filter (FlowsRequest) serves every loop and collector that uses
// it. The first Collect for a filter starts the stream and returns at once (its first ticks
// may see no flows); a stream that errors or ends reconnects with backoff, asking the relay
// for the flows since the last one it received; a stream nobody reads for IdleTimeout is
// closed.
package hubble

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// Defaults of Options.
const (
	DefaultWindow      = 10 * time.Second
	DefaultIdleTimeout = 2 * time.Minute
	DefaultMaxSamples  = 100_000
)

// Backoff is the wait between reconnects: Initial, multiplied by Multiplier after each
// failed attempt up to Max, each wait spread by ±Jitter (a fraction). It restarts from
// Initial once a stream was established.
type Backoff struct {
	Initial    time.Duration // 100ms when 0
	Max        time.Duration // 10s when 0
	Multiplier float64       // 2 when 0
	Jitter     float64       // 0.2 when 0; negative for none
}

// Options configure a Collector.
type Options struct {
	// Address of Hubble Relay, host:port.
	Address string
	// TLS configures TLS to the relay; nil is plaintext.
	TLS *tls.Config
	// Backoff between reconnects.
	Backoff Backoff
	// IdleTimeout closes a stream (and forgets a window length) nobody has read for
	// that long; 2 minutes when 0.
	IdleTimeout time.Duration
	// MaxSamples bounds the samples (HTTP responses and drops) a stream keeps; the
	// oldest go first, and a window that lost some says so (field "truncated").
	// 100,000 (1.6 MB) when 0.
	MaxSamples int
	// DialOptions are added to the gRPC client's options.
	DialOptions []grpc.DialOption
}

// Collector is a collectors.Source of Hubble flow latency statistics.
type Collector struct {
	opts    Options
	clock   func() time.Time // when a flow is received: time.Now
	conn    *grpc.ClientConn
	connErr error
	client  observer.ObserverClient
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	streams map[string]*stream
	closed  bool
}

var _ collectors.Source = (*Collector)(nil)

// New returns a collector for the relay at opts.Address. It connects lazily, when the
// first stream starts; Close stops every stream.
func New(opts Options) *Collector {
	b := &opts.Backoff
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	b.Max = max(b.Max, b.Initial)
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	if b.Jitter == 0 {
		b.Jitter = 0.2
	}
	b.Jitter = min(max(b.Jitter, 0), 1)
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// gRPC's own reconnects follow the same backoff (its default reaches 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: b.Initial, Multiplier: b.Multiplier, Jitter: b.Jitter, MaxDelay: b.Max,
		}, MinConnectTimeout: 5 * time.Second}),
	}, opts.DialOptions...)
	c := &Collector{opts: opts, clock: time.Now, streams: map[string]*stream{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.conn, c.connErr = grpc.NewClient(opts.Address, dial...)
	if c.connErr == nil {
		c.client = observer.NewObserverClient(c.conn)
	}
	c.wg.Go(c.reap)
	return c
}

// Collect implements collectors.Source: the statistics of the flows spec.Hubble selects
// whose time is in (now - window, now], window being spec.Window (10s by default). It never
// blocks; the first Collect of a filter starts its stream.
//
//   - Value: the jitter, the mean absolute difference of successive latencies (ms), of the
//     HTTP responses with a latency; nil with fewer than two. This is one of two definitions
//     of jitter: the deterministic-networking controller's is field p95 below, the 95th
//     percentile of the latency (histogram_quantile(0.95, ...) over Hubble's metrics); the
//     bandwidth policy reads either (param jitter_field), and mean or p99 as a latency.
//   - ObservedAt: the time of the newest flow received (in the window whenever there is a
//     Value; never after now). It does not advance while the relay is down.
//   - Fields: count (responses with a latency), drops (DROPPED flows), window_seconds,
//     truncated (the window lost samples to MaxSamples); with count > 0 p50, p95, p99
//     (nearest rank) and mean, in ms; with any HTTP response error_rate (share of status
//     >= 500).
//   - Err: "relay <addr> unreachable since <time>: <reason>" while the stream is down (the
//     window's Value stays until it ages out), "relay <addr> refuses the stream since ..."
//     when the relay answers with an error (e.g. not a Hubble Relay), "no flows in the last
//     <window>", or why there is no Value.
func (c *Collector) Collect(_ context.Context, _ *v1alpha1.ControlLoop, spec *v1alpha1.CollectorSpec, now time.Time) collectors.Metric {
	if spec == nil || spec.Hubble == nil {
		return collectors.Metric{Err: "not a hubble collector"}
	}
	window := spec.Hubble.Window.Duration
	if window == 0 {
		window = DefaultWindow
	}
	if window < 0 {
		return collectors.Metric{Err: fmt.Sprintf("window %v is negative", window)}
	}
	req, err := FlowsRequest(spec.Hubble)
	if err != nil {
		return collectors.Metric{Err: err.Error()}
	}
	if c.connErr != nil {
		return collectors.Metric{Err: fmt.Sprintf("relay %s: %v", c.opts.Address, c.connErr)}
	}
	k, err := key(req)
	if err != nil {
		return collectors.Metric{Err: err.Error()}
	}
	s, err := c.stream(k, req, window)
	if err != nil {
		return collectors.Metric{Err: err.Error()}
	}
	return s.collect(window, now)
}

// stream returns the stream of key k, started now if there is none, and records that
// window was read from it.
func (c *Collector) stream(k string, req *observer.GetFlowsRequest, window time.Duration) (*stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("hubble collector closed")
	}
	s := c.streams[k]
	if s == nil {
		s = newStream(c, req, window)
		c.streams[k] = s
		c.wg.Go(s.run)
	}
	s.read(window, time.Now())
	return s, nil
}

// reap closes the streams nobody has read for IdleTimeout and forgets window lengths
// nobody has read for as long.
func (c *Collector) reap() {
	t := time.NewTicker(min(c.opts.IdleTimeout/4, 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			for k, s := range c.streams {
				if !s.expire(now.Add(-c.opts.IdleTimeout)) {
					s.cancel()
					delete(c.streams, k)
				}
			}
			c.mu.Unlock()
		}
	}
}

// Close stops every stream and closes the connection to the relay. Collect afterwards
// reports the collector closed.
func (c *Collector) Close() error {
	c.mu.Lock()
	c.closed = true
	for k, s := range c.streams {
		s.cancel()
		delete(c.streams, k)
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// wait is the n-th reconnect wait (n from 0).
func (b Backoff) wait(n int, r *rand.Rand) time.Duration {
	d := float64(b.Initial)
	for range n {
		d *= b.Multiplier
		if d >= float64(b.Max) {
			d = float64(b.Max)
			break
		}
	}
	d *= 1 + b.Jitter*(2*r.Float64()-1)
	return time.Duration(d)
}
