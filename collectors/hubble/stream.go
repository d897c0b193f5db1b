package hubble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"governor.dev/governor/collectors"
)

// stream is one GetFlows stream and the samples it keeps for its window lengths.
type stream struct {
	c      *Collector
	req    *observer.GetFlowsRequest
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	buf      deque
	windows  map[time.Duration]time.Time // window length → last read (wall clock)
	keep     time.Duration               // the longest window
	newest   int64                       // time of the newest flow received, Unix ns; 0: none
	received uint64                      // flows received
	// The newest sample dropped for MaxSamples, and how many were.
	cappedAt int64
	capped   uint64
	// Connection: up once a GetFlows stream is established; downSince and reason from the
	// first failure after that (or from the start) until the next.
	up        bool
	downSince time.Time
	reason    string
	refused   bool // the relay answered, and refused the stream (e.g. not a Hubble Relay)
}

func newStream(c *Collector, req *observer.GetFlowsRequest, window time.Duration) *stream {
	s := &stream{c: c, req: req, windows: map[time.Duration]time.Time{}, keep: window}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	return s
}

// read records that window was read at now.
func (s *stream) read(window time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows[window] = now
	s.keep = max(s.keep, window)
}

// expire forgets the window lengths last read before cutoff; it reports whether any is
// left.
func (s *stream) expire(cutoff time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep = 0
	for w, at := range s.windows {
		if at.Before(cutoff) {
			delete(s.windows, w)
			continue
		}
		s.keep = max(s.keep, w)
	}
	return len(s.windows) > 0
}

// run keeps a GetFlows stream open until the stream is cancelled, reconnecting with backoff.
func (s *stream) run() {
	r := newRand()
	for attempt := 0; ; attempt++ {
		established, err := s.once()
		if s.ctx.Err() != nil {
			return
		}
		s.failed(err)
		if established {
			attempt = 0
		}
		t := time.NewTimer(s.c.opts.Backoff.wait(attempt, r))
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// once runs one GetFlows call to its end. It asks for the flows since the newest one
// received (or for the longest window), so a reconnect fills the gap the relay still holds.
func (s *stream) once() (established bool, err error) {
	req := proto.CloneOf(s.req)
	s.mu.Lock()
	since := time.Now().Add(-s.keep)
	if s.newest != 0 {
		since = time.Unix(0, s.newest+1)
	}
	s.mu.Unlock()
	req.Since = timestamppb.New(since)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	fs, err := s.c.client.GetFlows(ctx, req)
	if err != nil {
		return false, err
	}
	// The stream is established when the relay sends its headers (Hubble Relay does at
	// once, with the state of its nodes). Without headers it failed: Recv says why.
	md, err := fs.Header()
	if err == nil && md == nil {
		if _, err = fs.Recv(); err == nil || errors.Is(err, io.EOF) {
			err = errors.New("the relay ended the stream")
		}
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.up, s.downSince, s.reason = true, time.Time{}, ""
	s.mu.Unlock()
	for {
		resp, err := fs.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the relay ended the stream")
			}
			return true, err
		}
		if f := resp.GetFlow(); f != nil {
			s.ingest(f)
		}
	}
}

// failed records that the stream is down, because of err.
func (s *stream) failed(err error) {
	st := status.Convert(err)
	reason := st.Message()
	if reason == "" {
		reason = err.Error()
	}
	var refused bool
	switch st.Code() {
	case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated,
		codes.FailedPrecondition, codes.NotFound, codes.OutOfRange:
		refused, reason = true, st.Code().String()+": "+reason
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up || s.downSince.IsZero() {
		s.downSince = time.Now()
	}
	s.up, s.reason, s.refused = false, reason, refused
}

// ingest adds one flow: a drop or an HTTP response becomes a sample; any flow counts for
// the time of the newest flow.
func (s *stream) ingest(f *flowpb.Flow) {
	// A flow dated in the future (a node's clock ahead) counts as received
	// now: it must not pin the newest flow's time, which dates the window's
	// value and the resume point of the next stream.
	at := s.c.clock().UnixNano()
	if ts := f.GetTime(); ts != nil {
		at = min(at, ts.GetSeconds()*1e9+int64(ts.GetNanos()))
	}
	var smp sample
	keep := true
	switch l7 := f.GetL7(); {
	case f.GetVerdict() == flowpb.Verdict_DROPPED:
		smp = sample{at: at, v: flagDrop}
	case l7.GetType() == flowpb.L7FlowType_RESPONSE && l7.GetHttp() != nil:
		smp = sample{at: at, v: min(l7.GetLatencyNs(), maxLatNs) << 2}
		if l7.GetHttp().GetCode() >= 500 {
			smp.v |= flagError
		}
	default:
		keep = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received++
	s.newest = max(s.newest, at)
	if !keep {
		return
	}
	s.evict(s.newest)
	for s.buf.len() >= s.c.opts.MaxSamples {
		s.cappedAt = max(s.cappedAt, s.buf.front().at)
		s.capped++
		s.buf.pop()
	}
	s.buf.push(smp)
}

// evict drops the samples too old for the longest window at time now (Unix ns).
func (s *stream) evict(now int64) {
	cutoff := now - int64(s.keep) - int64(reorderSlack)
	for s.buf.len() > 0 && s.buf.front().at < cutoff {
		s.buf.pop()
	}
}

// collect reads the window of length window ending at now.
func (s *stream) collect(window time.Duration, now time.Time) collectors.Metric {
	cutoff := now.Add(-window).UnixNano()
	lats := latsPool.Get().(*[]uint64)
	defer latsPool.Put(lats)

	s.mu.Lock()
	s.evict(now.UnixNano())
	st, l := gather(&s.buf, cutoff, (*lats)[:0])
	*lats = l
	newest, truncated := s.newest, s.cappedAt > cutoff
	up, downSince, reason, refused := s.up, s.downSince, s.reason, s.refused
	s.mu.Unlock()

	st.percentiles(*lats)
	m := collectors.Metric{Fields: map[string]any{
		"count":          st.count,
		"drops":          st.drops,
		"window_seconds": window.Seconds(),
		"truncated":      truncated,
	}}
	if st.responses > 0 {
		m.Fields["error_rate"] = float64(st.errors) / float64(st.responses)
	}
	inWindow := newest > cutoff
	if newest != 0 { // the newest flow, in the window when there is a value
		m.ObservedAt = time.Unix(0, newest)
		if m.ObservedAt.After(now) {
			m.ObservedAt = now // a relay clock ahead of ours: never newer than the tick
		}
	}
	if st.count > 0 {
		m.Fields["p50"], m.Fields["p95"], m.Fields["p99"], m.Fields["mean"] = st.p50, st.p95, st.p99, st.mean
	}
	if st.count > 1 {
		v := st.jitter
		m.Value = &v
	}
	switch {
	case !up && !downSince.IsZero() && refused:
		m.Err = fmt.Sprintf("relay %s refuses the stream since %s: %s", s.c.opts.Address, downSince.UTC().Format(time.RFC3339), reason)
	case !up && !downSince.IsZero():
		m.Err = fmt.Sprintf("relay %s unreachable since %s: %s", s.c.opts.Address, downSince.UTC().Format(time.RFC3339), reason)
	case !inWindow:
		m.Err = fmt.Sprintf("no flows in the last %s", window)
	case st.count == 0:
		m.Err = fmt.Sprintf("no HTTP responses with a latency in the last %s", window)
	case st.count == 1:
		m.Err = fmt.Sprintf("one HTTP response in the last %s: jitter needs two", window)
	}
	return m
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)) }

var latsPool = sync.Pool{New: func() any { return new([]uint64) }}
