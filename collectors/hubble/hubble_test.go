package hubble

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
)

var (
	plc       = relay.Workload{Namespace: "factory", Name: "plc", Labels: map[string]string{"app": "plc"}}
	robot     = relay.Workload{Namespace: "factory", Name: "robot-control", Labels: map[string]string{"app": "robot-control"}, Pods: 2}
	telemetry = relay.Workload{Namespace: "factory", Name: "telemetry", Labels: map[string]string{"app": "telemetry"}}
	dashboard = relay.Workload{Namespace: "office", Name: "dashboard", Labels: map[string]string{"app": "dashboard"}}
)

// toRobot is the collector of a loop watching the robot controller's HTTP latency.
var toRobot = &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Namespace: "factory", Workload: "robot-control"}}

func loop(name string) *v1alpha1.ControlLoop {
	return &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "factory"}}
}

func spec(h *v1alpha1.HubbleCollector) *v1alpha1.CollectorSpec {
	return &v1alpha1.CollectorSpec{Name: "jitter", Hubble: h}
}

func withWindow(h *v1alpha1.HubbleCollector, w time.Duration) *v1alpha1.HubbleCollector {
	h = h.DeepCopy()
	h.Window = metav1.Duration{Duration: w}
	return h
}

// fast reconnects, for tests.
var fast = Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}

func newCollector(t testing.TB, opts Options) *Collector {
	t.Helper()
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = fast
	}
	c := New(opts)
	// The tests' flows are dated ahead of the wall clock as they need; only
	// TestFutureFlowsCountAsReceivedNow checks what a flow from the future is.
	c.clock = func() time.Time { return time.Now().Add(time.Hour) }
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func collect(c *Collector, h *v1alpha1.HubbleCollector, now time.Time) collectors.Metric {
	return c.Collect(context.Background(), loop("qos"), spec(h), now)
}

// connected starts the stream of h and waits until it is established.
func connected(t testing.TB, c *Collector, h *v1alpha1.HubbleCollector) *stream {
	t.Helper()
	collect(c, h, time.Now())
	req, err := FlowsRequest(h)
	require.NoError(t, err)
	k, err := key(req)
	require.NoError(t, err)
	c.mu.Lock()
	s := c.streams[k]
	c.mu.Unlock()
	require.NotNil(t, s)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.up
	}, 10*time.Second, 5*time.Millisecond, "stream to %s established", c.opts.Address)
	return s
}

func (s *stream) receivedFlows() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// response is the HTTP response flow of an exchange from plc to robot-control, as Hubble
// reports it (from the server to the client).
func response(at time.Time, lat time.Duration, code uint32) *flowpb.Flow {
	return &flowpb.Flow{
		Time:        timestamppb.New(at),
		Verdict:     flowpb.Verdict_FORWARDED,
		Source:      &flowpb.Endpoint{Namespace: "factory", PodName: "robot-control-1-0", Workloads: []*flowpb.Workload{{Name: "robot-control", Kind: "Deployment"}}},
		Destination: &flowpb.Endpoint{Namespace: "factory", PodName: "plc-1-0", Workloads: []*flowpb.Workload{{Name: "plc", Kind: "Deployment"}}},
		Type:        flowpb.FlowType_L7,
		L7: &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, LatencyNs: uint64(lat),
			Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: code, Method: "GET", Url: "http://robot-control/"}}},
		IsReply:   wrapperspb.Bool(true),
		EventType: &flowpb.CiliumEventType{Type: relay.MessageTypeAccessLog},
	}
}

// drop is a dropped packet from plc to robot-control.
func drop(at time.Time) *flowpb.Flow {
	return &flowpb.Flow{
		Time:        timestamppb.New(at),
		Verdict:     flowpb.Verdict_DROPPED,
		Source:      &flowpb.Endpoint{Namespace: "factory", PodName: "plc-1-0", Workloads: []*flowpb.Workload{{Name: "plc"}}},
		Destination: &flowpb.Endpoint{Namespace: "factory", PodName: "robot-control-1-0", Workloads: []*flowpb.Workload{{Name: "robot-control"}}},
		Type:        flowpb.FlowType_L3_L4,
		EventType:   &flowpb.CiliumEventType{Type: relay.MessageTypeDrop},
	}
}

func fieldf(t *testing.T, m collectors.Metric, name string) float64 {
	t.Helper()
	v, ok := m.Fields[name]
	require.True(t, ok, "field %s in %v", name, m.Fields)
	switch v := v.(type) {
	case float64:
		return v
	case int:
		return float64(v)
	}
	t.Fatalf("field %s: %T", name, v)
	return 0
}

// The statistics of a known sequence of flows, exactly, as the window slides over it;
// a second window length on the same filter shares the stream.
func TestWindowStatisticsExactly(t *testing.T) {
	r := relaytest.Start(t, relay.Config{})
	c := newCollector(t, Options{Address: r.Addr()})
	s := connected(t, c, toRobot)

	base := time.Now().Truncate(time.Second)
	ms := time.Millisecond
	lat := []time.Duration{5 * ms, 1 * ms, 9 * ms, 3 * ms, 7 * ms, 2 * ms, 8 * ms, 4 * ms, 6 * ms, 10 * ms}
	var flows []*flowpb.Flow
	for i, l := range lat {
		code := uint32(200)
		if i == 2 || i == 7 {
			code = 503
		}
		flows = append(flows, response(base.Add(time.Duration(i)*100*ms), l, code))
		switch i {
		case 2, 6:
			flows = append(flows, drop(base.Add(time.Duration(i)*100*ms+50*ms)))
		case 4:
			// Not selected: a response from telemetry, a request to robot-control.
			other := response(base.Add(410*ms), 100*ms, 500)
			other.Source.Workloads[0].Name = "telemetry"
			req := response(base.Add(420*ms), 0, 0)
			req.L7.Type, req.IsReply = flowpb.L7FlowType_REQUEST, wrapperspb.Bool(false)
			flows = append(flows, other, req)
		}
	}
	r.Publish(flows...)
	require.Eventually(t, func() bool { return s.receivedFlows() == 12 }, 10*time.Second, 5*time.Millisecond,
		"the 10 responses and 2 drops selected arrive (got %d)", s.receivedFlows())

	m := collect(c, toRobot, base.Add(time.Second))
	require.Empty(t, m.Err)
	require.NotNil(t, m.Value)
	// Jitter: (4+8+6+4+5+6+4+2+4)/9 ms.
	assert.InDelta(t, 43.0/9, *m.Value, 1e-12)
	assert.Equal(t, base.Add(900*ms), m.ObservedAt, "the newest flow")
	assert.Equal(t, map[string]any{
		"count": 10, "p50": 5.0, "p95": 10.0, "p99": 10.0, "mean": 5.5,
		"drops": 2, "error_rate": 0.2, "window_seconds": 10.0, "truncated": false,
	}, m.Fields)

	// 10.45s later the window holds the flows after 0.45s: responses 5..9, one drop.
	m = collect(c, toRobot, base.Add(10450*ms))
	require.Empty(t, m.Err)
	assert.InDelta(t, 4.0, *m.Value, 1e-12) // (6+4+2+4)/4
	assert.Equal(t, map[string]any{
		"count": 5, "p50": 6.0, "p95": 10.0, "p99": 10.0, "mean": 6.0,
		"drops": 1, "error_rate": 0.2, "window_seconds": 10.0, "truncated": false,
	}, m.Fields)

	// A 500ms window at 1s: the flows after 0.5s (a flow at the very edge is out).
	half := withWindow(toRobot, 500*ms)
	m = collect(c, half, base.Add(time.Second))
	require.Empty(t, m.Err)
	assert.InDelta(t, 10.0/3, *m.Value, 1e-12) // (4+2+4)/3
	assert.Equal(t, map[string]any{
		"count": 4, "p50": 6.0, "p95": 10.0, "p99": 10.0, "mean": 7.0,
		"drops": 1, "error_rate": 0.25, "window_seconds": 0.5, "truncated": false,
	}, m.Fields)
	assert.Equal(t, int64(1), r.GetFlowsCalls(), "one stream for both window lengths")

	// All aged out: no value, and the time of the last flow.
	m = collect(c, toRobot, base.Add(11*time.Second))
	assert.Nil(t, m.Value)
	assert.Equal(t, "no flows in the last 10s", m.Err)
	assert.Equal(t, base.Add(900*ms), m.ObservedAt)
	assert.Equal(t, 0, m.Fields["count"])
	assert.Equal(t, 0, m.Fields["drops"])
}

// A scripted plant without randomness, through the relay's generator: a constant latency
// has no jitter; alternating latencies have exactly their difference as jitter.
func TestStatisticsOfScriptedPlants(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 1, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 500, Plant: sim.NewScripted(5*time.Millisecond, 0)},
		{Source: plc, Destination: telemetry, Rate: 500, Plant: sim.NewSequence(3*time.Millisecond, 7*time.Millisecond)},
	}})
	c := newCollector(t, Options{Address: r.Addr()})
	toTelemetry := &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: "telemetry"}}
	var m collectors.Metric
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return m.Value != nil && fieldf(t, m, "count") >= 200
	}, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, m.Err)
	assert.Equal(t, 0.0, *m.Value)
	for _, f := range []string{"p50", "p95", "p99", "mean"} {
		assert.Equal(t, 5.0, m.Fields[f], f)
	}
	assert.Equal(t, 0.0, m.Fields["error_rate"])
	assert.Equal(t, 0, m.Fields["drops"])
	assert.WithinDuration(t, time.Now(), m.ObservedAt, time.Second)

	require.Eventually(t, func() bool {
		m = collect(c, toTelemetry, time.Now())
		return m.Value != nil && fieldf(t, m, "count") >= 200
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 4.0, *m.Value)
	assert.Equal(t, 3.0, m.Fields["p50"])
	assert.Equal(t, 7.0, m.Fields["p99"])
}

// Only the flows a collector's filter selects count: three routes stream, each collector
// sees its own.
func TestFiltersSelectTheFlows(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 2, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 400, DropRatio: 0.1, Plant: sim.NewScripted(2*time.Millisecond, 0)},
		{Source: plc, Destination: telemetry, Rate: 400, ErrorRatio: 0.5, Plant: sim.NewScripted(20*time.Millisecond, 0)},
		{Source: dashboard, Destination: robot, Rate: 400, Plant: sim.NewScripted(7*time.Millisecond, 0)},
	}})
	c := newCollector(t, Options{Address: r.Addr()})
	for _, tc := range []struct {
		name  string
		h     *v1alpha1.HubbleCollector
		check func(t *testing.T, m collectors.Metric)
	}{
		{"to robot-control in factory: from plc and dashboard", toRobot, func(t *testing.T, m collectors.Metric) {
			assert.Contains(t, []float64{2, 7}, m.Fields["p50"])
			assert.Equal(t, 7.0, m.Fields["p99"])
			assert.Greater(t, *m.Value, 0.0)
			assert.Greater(t, fieldf(t, m, "drops"), 0.0)
			assert.Equal(t, 0.0, m.Fields["error_rate"])
		}},
		{"from factory to robot-control: plc only", &v1alpha1.HubbleCollector{
			Source:      &v1alpha1.FlowEndpoint{Namespace: "factory"},
			Destination: &v1alpha1.FlowEndpoint{Workload: "robot-control"},
		}, func(t *testing.T, m collectors.Metric) {
			assert.Equal(t, 2.0, m.Fields["p50"])
			assert.Equal(t, 2.0, m.Fields["p99"])
			assert.Equal(t, 0.0, *m.Value)
			assert.Greater(t, fieldf(t, m, "drops"), 0.0)
		}},
		{"from the office: dashboard only, no drops", &v1alpha1.HubbleCollector{
			Source: &v1alpha1.FlowEndpoint{Namespace: "office"},
		}, func(t *testing.T, m collectors.Metric) {
			assert.Equal(t, 7.0, m.Fields["p50"])
			assert.Equal(t, 7.0, m.Fields["p99"])
			assert.Equal(t, 0, m.Fields["drops"])
		}},
		{"to the Pods labelled app=telemetry", &v1alpha1.HubbleCollector{
			Destination: &v1alpha1.FlowEndpoint{Labels: map[string]string{"app": "telemetry"}},
		}, func(t *testing.T, m collectors.Metric) {
			assert.Equal(t, 20.0, m.Fields["p50"])
			assert.InDelta(t, 0.5, m.Fields["error_rate"], 0.15)
		}},
		{"to telemetry, 5xx only", &v1alpha1.HubbleCollector{
			Destination: &v1alpha1.FlowEndpoint{Workload: "telemetry"}, HTTPStatus: []string{"5+"},
		}, func(t *testing.T, m collectors.Metric) {
			assert.Equal(t, 20.0, m.Fields["p99"])
			assert.Equal(t, 1.0, m.Fields["error_rate"])
		}},
		{"from plc labelled app=plc and tier=edge: none", &v1alpha1.HubbleCollector{
			Source: &v1alpha1.FlowEndpoint{Labels: map[string]string{"app": "plc", "tier": "edge"}},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.check == nil {
				collect(c, tc.h, time.Now())
				time.Sleep(500 * time.Millisecond)
				m := collect(c, tc.h, time.Now())
				assert.Nil(t, m.Value)
				assert.Equal(t, "no flows in the last 10s", m.Err)
				return
			}
			var m collectors.Metric
			require.Eventually(t, func() bool {
				m = collect(c, tc.h, time.Now())
				return m.Value != nil && fieldf(t, m, "count") >= 100
			}, 10*time.Second, 10*time.Millisecond, "flows for %s: %+v", tc.name, m)
			assert.Empty(t, m.Err)
			tc.check(t, m)
		})
	}
}

// Loops with the same filter share one stream, whatever their window; the relay sees one
// GetFlows call per distinct filter.
func TestLoopsShareAStream(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 3, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 300, Plant: sim.NewScripted(3*time.Millisecond, time.Millisecond)},
	}})
	c := newCollector(t, Options{Address: r.Addr()})
	a, b := loop("qos-a"), loop("qos-b")
	same := toRobot.DeepCopy() // an equal spec, another object
	long := withWindow(toRobot, 30*time.Second)
	var ma, mb, ml collectors.Metric
	require.Eventually(t, func() bool {
		now := time.Now()
		ma = c.Collect(context.Background(), a, spec(toRobot), now)
		mb = c.Collect(context.Background(), b, spec(same), now)
		ml = c.Collect(context.Background(), b, spec(long), now)
		return ma.Value != nil && mb.Value != nil && ml.Value != nil
	}, 10*time.Second, 20*time.Millisecond)
	s := connectedOrNot(t, c, toRobot)
	for { // the same window of the same stream, when no flow arrives in between
		n, now := s.receivedFlows(), time.Now()
		ma = c.Collect(context.Background(), a, spec(toRobot), now)
		mb = c.Collect(context.Background(), b, spec(same), now)
		if s.receivedFlows() == n {
			break
		}
	}
	assert.Equal(t, ma, mb, "the same window of the same stream")
	assert.Equal(t, 30.0, ml.Fields["window_seconds"])
	assert.Equal(t, int64(1), r.GetFlowsCalls())
	assert.Equal(t, int64(1), r.ActiveStreams())

	other := &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: "robot-control"}}
	require.Eventually(t, func() bool { return collect(c, other, time.Now()).Value != nil }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, int64(2), r.GetFlowsCalls(), "another filter, another stream")
	c.mu.Lock()
	assert.Len(t, c.streams, 2)
	c.mu.Unlock()
}

// Relay down: the collector says so, keeps the window's value (it ages out) and its
// ObservedAt stops; relay back on the same address: flows resume in the same collector.
func TestRelayOutageAndRecovery(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 4, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 300, Plant: sim.NewScripted(3*time.Millisecond, time.Millisecond)},
	}})
	c := newCollector(t, Options{Address: r.Addr()})
	var m collectors.Metric
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return m.Value != nil
	}, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, m.Err)

	r.Stop()
	stopped := time.Now() // the generator has stopped: no flow is newer
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return strings.Contains(m.Err, "unreachable")
	}, 10*time.Second, 10*time.Millisecond)
	assert.Regexp(t, `^relay 127\.0\.0\.1:\d+ unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: .+`, m.Err)
	assert.True(t, strings.HasPrefix(m.Err, "relay "+r.Addr()+" unreachable since "), m.Err)
	require.NotNil(t, m.Value, "the window's value, still")
	last := m.ObservedAt
	assert.False(t, last.After(stopped), "no flow after the relay stopped")
	s := connectedOrNot(t, c, toRobot)
	s.mu.Lock()
	since := s.downSince
	s.mu.Unlock()
	time.Sleep(300 * time.Millisecond) // several reconnects fail meanwhile
	m = collect(c, toRobot, time.Now())
	assert.Contains(t, m.Err, "unreachable")
	assert.Equal(t, last, m.ObservedAt, "ObservedAt does not advance while the relay is down")
	s.mu.Lock()
	assert.Equal(t, since, s.downSince, "down since the first failure")
	s.mu.Unlock()
	t.Logf("while down: %s", m.Err)

	aged := collect(c, toRobot, last.Add(11*time.Second))
	assert.Nil(t, aged.Value, "the window ages out")
	assert.Contains(t, aged.Err, "unreachable")

	calls := r.GetFlowsCalls()
	relaytest.Restart(t, r)
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return m.Err == "" && m.ObservedAt.After(last)
	}, 10*time.Second, 10*time.Millisecond, "flows resume: %+v", m)
	assert.NotNil(t, m.Value)
	assert.Greater(t, r.GetFlowsCalls(), calls)
}

// A stream nobody reads is closed; the next Collect starts it again.
func TestIdleStreamsClose(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 5, Routes: []relay.Route{{Source: plc, Destination: robot, Rate: 100}}})
	c := newCollector(t, Options{Address: r.Addr(), Backoff: fast, IdleTimeout: 400 * time.Millisecond})
	connected(t, c, toRobot)
	require.Equal(t, int64(1), r.ActiveStreams())
	require.Eventually(t, func() bool { return r.ActiveStreams() == 0 }, 5*time.Second, 10*time.Millisecond, "the idle stream closes")
	c.mu.Lock()
	assert.Empty(t, c.streams)
	c.mu.Unlock()

	connected(t, c, toRobot)
	assert.Equal(t, int64(2), r.GetFlowsCalls(), "read again: a new stream")

	// A window length nobody reads is forgotten: the buffer keeps what the others need.
	long := withWindow(toRobot, time.Minute)
	s := connected(t, c, long)
	s.mu.Lock()
	assert.Equal(t, time.Minute, s.keep)
	s.mu.Unlock()
	require.Eventually(t, func() bool {
		collect(c, toRobot, time.Now()) // keeps the 10s window (and the stream) read
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.keep == 10*time.Second
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, int64(2), r.GetFlowsCalls())
}

// Close stops every stream; Collect afterwards says the collector is closed.
func TestCloseStopsEveryStream(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 5, Routes: []relay.Route{{Source: plc, Destination: robot, Rate: 100}}})
	c := New(Options{Address: r.Addr(), Backoff: fast})
	connected(t, c, toRobot)
	connected(t, c, withWindow(toRobot, time.Minute))
	connected(t, c, &v1alpha1.HubbleCollector{Source: &v1alpha1.FlowEndpoint{Workload: "plc"}})
	require.Eventually(t, func() bool { return r.ActiveStreams() == 2 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(2), r.GetFlowsCalls())

	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return r.ActiveStreams() == 0 }, 5*time.Second, 10*time.Millisecond)
	m := collect(c, toRobot, time.Now())
	assert.Equal(t, "hubble collector closed", m.Err)
	assert.Equal(t, int64(2), r.GetFlowsCalls())
}

// A server that is not a Hubble Relay answers, and refuses the stream; the collector tries
// again with growing waits, and the failure keeps the time it began.
func TestNotAHubbleRelay(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var calls atomic.Int64
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		calls.Add(1)
		return status.Error(codes.Unimplemented, "unknown service observer.Observer")
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c := newCollector(t, Options{Address: lis.Addr().String(), Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond}})
	var m collectors.Metric
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return m.Err != "" && m.Err != "no flows in the last 10s"
	}, 10*time.Second, 10*time.Millisecond)
	assert.Regexp(t, `^relay 127\.0\.0\.1:\d+ refuses the stream since \S+: Unimplemented: unknown service observer.Observer$`, m.Err)
	assert.Nil(t, m.Value)

	s := connectedOrNot(t, c, toRobot)
	s.mu.Lock()
	since := s.downSince
	s.mu.Unlock()
	start := calls.Load()
	time.Sleep(time.Second)
	// 10, 20, 40, 80, 160, then 200ms (±20%): about 9 tries in a second, not 100.
	tries := calls.Load() - start
	assert.LessOrEqual(t, tries, int64(12), "backoff")
	assert.GreaterOrEqual(t, tries, int64(3), "backoff")
	s.mu.Lock()
	assert.Equal(t, since, s.downSince, "down since the first failure")
	s.mu.Unlock()
}

// connectedOrNot is the stream of h, whatever its state.
func connectedOrNot(t testing.TB, c *Collector, h *v1alpha1.HubbleCollector) *stream {
	t.Helper()
	req, err := FlowsRequest(h)
	require.NoError(t, err)
	k, err := key(req)
	require.NoError(t, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.NotNil(t, c.streams[k])
	return c.streams[k]
}

func TestBadSpecsStartNoStream(t *testing.T) {
	r := relaytest.Start(t, relay.Config{})
	c := newCollector(t, Options{Address: r.Addr()})
	m := collect(c, &v1alpha1.HubbleCollector{HTTPStatus: []string{"oops"}}, time.Now())
	assert.Contains(t, m.Err, `httpStatus "oops"`)
	m = collect(c, withWindow(toRobot, -time.Second), time.Now())
	assert.Contains(t, m.Err, "negative")
	m = c.Collect(context.Background(), loop("x"), &v1alpha1.CollectorSpec{Name: "x"}, time.Now())
	assert.Equal(t, "not a hubble collector", m.Err)
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, r.GetFlowsCalls())
}

// tlsFiles makes a self-signed CA and a certificate for 127.0.0.1 it signs.
func testPKI(t *testing.T) (server *tls.Config, roots *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "governor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hubble-relay"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"hubble-relay.kube-system.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}, roots
}

// TLS end to end: a relay serving a certificate of a CA the collector trusts; a collector
// that does not trust it, or speaks plaintext, reports the relay unreachable.
func TestTLS(t *testing.T) {
	serverTLS, roots := testPKI(t)
	r := relaytest.Start(t, relay.Config{Seed: 6, TLS: serverTLS, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 300, Plant: sim.NewScripted(3*time.Millisecond, time.Millisecond)},
	}})
	c := newCollector(t, Options{Address: r.Addr(), TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}})
	var m collectors.Metric
	require.Eventually(t, func() bool {
		m = collect(c, toRobot, time.Now())
		return m.Value != nil
	}, 10*time.Second, 10*time.Millisecond, "flows over TLS: %+v", m)
	assert.Empty(t, m.Err)

	untrusted := newCollector(t, Options{Address: r.Addr(), TLS: &tls.Config{RootCAs: x509.NewCertPool()}})
	plaintext := newCollector(t, Options{Address: r.Addr()})
	for name, c := range map[string]*Collector{"untrusted": untrusted, "plaintext": plaintext} {
		require.Eventually(t, func() bool {
			m = collect(c, toRobot, time.Now())
			return strings.Contains(m.Err, "unreachable")
		}, 10*time.Second, 10*time.Millisecond, name)
		assert.Nil(t, m.Value)
		t.Logf("%s: %s", name, m.Err)
	}
	assert.Contains(t, collect(untrusted, toRobot, time.Now()).Err, "certificate")
}

// Memory is bounded: a stream keeps MaxSamples samples at most, the oldest go first, and
// a window that lost some says so.
func TestMemoryBound(t *testing.T) {
	assert.Equal(t, uintptr(16), unsafe.Sizeof(sample{}))

	r := relaytest.Start(t, relay.Config{})
	c := newCollector(t, Options{Address: r.Addr(), MaxSamples: 1000})
	s := connected(t, c, toRobot)
	base := time.Now().Truncate(time.Second)
	var flows []*flowpb.Flow
	var lat []float64
	for i := range 5000 {
		l := time.Duration(1+i%7) * time.Millisecond
		flows = append(flows, response(base.Add(time.Duration(i)*time.Millisecond), l, 200))
		if i >= 4000 {
			lat = append(lat, float64(l)/1e6)
		}
	}
	r.Publish(flows...)
	require.Eventually(t, func() bool { return s.receivedFlows() == 5000 }, 10*time.Second, 5*time.Millisecond)

	m := collect(c, toRobot, base.Add(5*time.Second))
	require.Empty(t, m.Err)
	assert.Equal(t, 1000, m.Fields["count"], "only the newest 1000")
	assert.Equal(t, true, m.Fields["truncated"])
	jitter, mean := 0.0, 0.0
	for i, l := range lat {
		mean += l / 1000
		if i > 0 {
			jitter += abs(l-lat[i-1]) / 999
		}
	}
	assert.InDelta(t, jitter, *m.Value, 1e-9)
	assert.InDelta(t, mean, m.Fields["mean"], 1e-9)
	s.mu.Lock()
	assert.Equal(t, 1000, s.buf.len())
	assert.Equal(t, uint64(4000), s.capped)
	assert.LessOrEqual(t, len(s.buf.chunks), 2)
	s.mu.Unlock()

	// A window that starts after the newest sample dropped is whole again.
	m = collect(c, withWindow(toRobot, 500*time.Millisecond), base.Add(5*time.Second))
	assert.Equal(t, false, m.Fields["truncated"])
	assert.Equal(t, 499, m.Fields["count"])
}

// At the default cap, a flood keeps 100,000 samples in about 1.6 MB; with a time window
// shorter than the cap, memory follows the window and is released.
func TestMemoryBoundDirect(t *testing.T) {
	c := New(Options{Address: "127.0.0.1:1"})
	t.Cleanup(func() { c.Close() })
	req, err := FlowsRequest(toRobot)
	require.NoError(t, err)
	s := newStream(c, req, 10*time.Second)
	base := time.Now()
	c.clock = func() time.Time { return base.Add(time.Hour) } // the flows below are not from the future
	f := response(base, time.Millisecond, 200)
	for i := range 250_000 {
		f.Time = timestamppb.New(base.Add(time.Duration(i) * time.Microsecond))
		s.ingest(f)
	}
	assert.Equal(t, DefaultMaxSamples, s.buf.len())
	assert.LessOrEqual(t, len(s.buf.chunks), DefaultMaxSamples/chunkLen+2)
	assert.Equal(t, uint64(150_000), s.capped)

	// 30s later at 1000 flows/s: a 10s window (and 1s of slack) is what stays.
	later := base.Add(30 * time.Second)
	for i := range 15_000 {
		f.Time = timestamppb.New(later.Add(time.Duration(i) * time.Millisecond))
		s.ingest(f)
	}
	assert.InDelta(t, 11_000, s.buf.len(), 2)
	assert.LessOrEqual(t, len(s.buf.chunks), 11_000/chunkLen+2)
	m := s.collect(10*time.Second, later.Add(15*time.Second))
	assert.Equal(t, 9_999, m.Fields["count"], "the flows after 5s: 5.001s ... 14.999s")
	assert.Equal(t, false, m.Fields["truncated"])
}

// A flow dated in the future counts as received now: it neither dates the
// window's value after now nor moves the point the next stream resumes from.
func TestFutureFlowsCountAsReceivedNow(t *testing.T) {
	c := New(Options{Address: "127.0.0.1:1"})
	t.Cleanup(func() { c.Close() })
	req, err := FlowsRequest(toRobot)
	require.NoError(t, err)
	s := newStream(c, req, 10*time.Second)
	now := time.Now()
	c.clock = func() time.Time { return now }
	s.ingest(response(now.Add(-time.Second), 2*time.Millisecond, 200))
	s.ingest(response(now.Add(24*time.Hour), 4*time.Millisecond, 200))

	assert.Equal(t, now.UnixNano(), s.newest)
	m := s.collect(10*time.Second, now)
	require.NotNil(t, m.Value)
	assert.True(t, now.Equal(m.ObservedAt), "observed at %s, not later than now", m.ObservedAt)
	assert.Equal(t, 2, m.Fields["count"], "both flows are in the window")
	m = s.collect(10*time.Second, now.Add(20*time.Second))
	assert.Nil(t, m.Value, "the future flow does not keep the window alive: it was received 20s ago")
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestDeque(t *testing.T) {
	var d deque
	next, first := int64(0), int64(0)
	for round := range 20 {
		for range 700 + round*37 {
			d.push(sample{at: next})
			next++
		}
		for range 500 + round*29 {
			require.Equal(t, first, d.front().at)
			d.pop()
			first++
		}
		require.Equal(t, int(next-first), d.len())
		for i := range d.len() {
			require.Equal(t, first+int64(i), d.at(i).at)
		}
	}
	for d.len() > 0 {
		d.pop()
	}
	assert.LessOrEqual(t, len(d.chunks), 1)
	d.push(sample{at: 42})
	assert.Equal(t, int64(42), d.front().at)
}

func TestBackoff(t *testing.T) {
	c := New(Options{Address: "127.0.0.1:1"})
	require.NoError(t, c.Close())
	b := c.opts.Backoff
	assert.Equal(t, Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2}, b)
	r := newRand()
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		for range 50 {
			w := b.wait(n, r)
			require.GreaterOrEqual(t, w, want*8/10)
			require.LessOrEqual(t, w, want*12/10)
		}
	}
	for range 50 {
		w := b.wait(20, r)
		require.GreaterOrEqual(t, w, 8*time.Second)
		require.LessOrEqual(t, w, 12*time.Second)
	}
}
