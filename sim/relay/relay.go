// Package relay is a simulated Hubble Relay: it implements the Observer gRPC service of
// Cilium's Hubble API (github.com/cilium/cilium/api/v1/observer) over real gRPC, and streams
// synthetic flows: L7 HTTP requests and responses between the workloads of its routes,
// with the latency of each response (latency_ns) drawn from a plant model (sim.Plant), some
// 5xx responses and some datapath drops at configurable ratios, deterministic with a seed.
//
// GetFlows applies follow, number, first, since, until and the whitelist and blacklist as
// Hubble does, for the filter fields source_pod, destination_pod, source_workload,
// destination_workload, source_label, destination_label, verdict, event_type,
// http_status_code and reply; a filter with any other field is refused (Unimplemented).
// ServerStatus and GetNodes answer; the other methods return Unimplemented.
package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Version is what ServerStatus and GetNodes report.
const Version = "governor-sim (Hubble API of Cilium v1.20)"

// Config configures a Relay.
type Config struct {
	// Routes are the traffic the relay generates; none is a relay that streams only what
	// Publish is given.
	Routes []Route
	// Seed makes the generated traffic repeatable: with the same seed, routes and plants,
	// each route draws the same sequence of pods, latencies, errors and drops.
	Seed uint64
	// Tick is how often the generator emits the flows due (their timestamps are spread
	// over the tick); 10ms when 0.
	Tick time.Duration
	// NodeName is the node every flow is observed on; "sim-node" when empty.
	NodeName string
	// Buffer is how many recent flows GetFlows can replay (number, since); 4096 when 0.
	Buffer int
	// StreamBuffer is how many flows wait for one slow GetFlows stream before the
	// generator (and Publish) waits for it; 1024 when 0.
	StreamBuffer int
	// TLS, when set, makes the relay serve TLS only.
	TLS *tls.Config
	// Now is the relay's clock; time.Now when nil.
	Now func() time.Time
}

// Relay is a simulated Hubble Relay. Serve it on a listener; Stop it, and Serve it again
// (on a new listener, e.g. the same address) to simulate an outage.
type Relay struct {
	cfg     Config
	routes  []*route
	started time.Time

	mu      sync.Mutex
	srv     *grpc.Server
	addr    string
	cancel  context.CancelFunc
	genDone chan struct{}
	ring    []*flowpb.Flow
	next    int // ring index of the next flow
	full    bool
	seen    uint64
	subs    []*subscriber

	calls  atomic.Int64
	active atomic.Int64
	ids    atomic.Uint64
}

// New returns a relay; it generates flows only while it serves.
func New(cfg Config) *Relay {
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "sim-node"
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relay{cfg: cfg, ring: make([]*flowpb.Flow, cfg.Buffer), started: cfg.Now()}
	for i, rt := range cfg.Routes {
		r.routes = append(r.routes, newRoute(rt, i, cfg.Seed, cfg.NodeName))
	}
	return r
}

// Serve serves the Observer service on lis and generates the routes' traffic until Stop;
// it returns nil then. A Relay serves one listener at a time.
func (r *Relay) Serve(lis net.Listener) error {
	var opts []grpc.ServerOption
	if r.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.cfg.TLS)))
	}
	srv := grpc.NewServer(opts...)
	observer.RegisterObserverServer(srv, &service{r: r})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})

	r.mu.Lock()
	if r.srv != nil {
		r.mu.Unlock()
		cancel()
		return errors.New("relay: already serving")
	}
	r.srv, r.addr, r.cancel, r.genDone = srv, lis.Addr().String(), cancel, done
	r.mu.Unlock()

	go func() {
		defer close(done)
		r.generate(ctx)
	}()
	err := srv.Serve(lis)
	cancel()
	<-done
	r.mu.Lock()
	if r.srv == srv {
		r.srv = nil
	}
	r.mu.Unlock()
	return err
}

// Stop closes the listener and every connection (clients see their streams fail) and
// stops the generator. The relay may Serve again afterwards.
func (r *Relay) Stop() {
	r.mu.Lock()
	srv, cancel, done := r.srv, r.cancel, r.genDone
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	cancel()
	srv.Stop()
	<-done
}

// Serving is the address the relay serves on now; "" while it does not serve (before
// Serve has registered its server, or after Stop).
func (r *Relay) Serving() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return ""
	}
	return r.addr
}

// Addr is the address the relay serves (or last served) on.
func (r *Relay) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// GetFlowsCalls is how many GetFlows calls the relay has received.
func (r *Relay) GetFlowsCalls() int64 { return r.calls.Load() }

// ActiveStreams is how many GetFlows calls are being served now.
func (r *Relay) ActiveStreams() int64 { return r.active.Load() }

// Seen is how many flows the relay has generated or been given.
func (r *Relay) Seen() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen
}

// Publish streams flows to every GetFlows stream whose filters they match, as if the relay
// had observed them, and keeps them for replay. It waits while a matching stream's buffer
// is full. Flows must not be changed afterwards.
func (r *Relay) Publish(flows ...*flowpb.Flow) {
	r.mu.Lock()
	for _, f := range flows {
		r.ring[r.next] = f
		r.next++
		if r.next == len(r.ring) {
			r.next, r.full = 0, true
		}
		r.seen++
	}
	subs := r.subs
	r.mu.Unlock()
	for _, s := range subs {
		for _, f := range flows {
			if !s.m.match(f) {
				continue
			}
			select {
			case s.ch <- f:
			case <-s.done:
			}
		}
	}
}

// generate emits the routes' exchanges as they fall due, until ctx ends.
func (r *Relay) generate(ctx context.Context) {
	if len(r.routes) == 0 {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(r.cfg.Tick)
	defer tick.Stop()
	last := r.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := r.cfg.Now()
		dt := now.Sub(last)
		if dt <= 0 {
			continue
		}
		for _, rt := range r.routes {
			rt.acc += rt.Rate * dt.Seconds()
			n := int(rt.acc)
			rt.acc -= float64(n)
			if limit := int(rt.Rate) + 1; n > limit { // after a long pause, do not catch up
				n = limit
			}
			for k := range n {
				t := last.Add(dt * time.Duration(k+1) / time.Duration(n))
				r.Publish(rt.exchange(t, r.uuid)...)
			}
		}
		last = now
	}
}

// uuid is a flow's UUID, repeatable with the seed.
func (r *Relay) uuid() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], splitmix(r.cfg.Seed^0x9e3779b97f4a7c15))
	binary.BigEndian.PutUint64(b[8:], splitmix(r.ids.Add(1)))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// subscriber is one following GetFlows stream.
type subscriber struct {
	m    *matcher
	ch   chan *flowpb.Flow
	done <-chan struct{}
}

// subscribe returns the buffered flows, oldest first, and registers s for the flows
// published afterwards when s is not nil.
func (r *Relay) subscribe(s *subscriber) []*flowpb.Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hist []*flowpb.Flow
	if r.full {
		hist = append(hist, r.ring[r.next:]...)
	}
	hist = append(hist, r.ring[:r.next]...)
	if s != nil {
		r.subs = append(r.subs[:len(r.subs):len(r.subs)], s)
	}
	return hist
}

func (r *Relay) unsubscribe(s *subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	subs := make([]*subscriber, 0, len(r.subs))
	for _, x := range r.subs {
		if x != s {
			subs = append(subs, x)
		}
	}
	r.subs = subs
}

// service implements observer.ObserverServer.
type service struct {
	observer.UnimplementedObserverServer
	r *Relay
}

// GetFlows answers as Hubble Relay does: the buffered flows that match the request (all of
// them, or the first or last number of them), then, when it follows, the flows published
// afterwards.
func (s *service) GetFlows(req *observer.GetFlowsRequest, stream grpc.ServerStreamingServer[observer.GetFlowsResponse]) error {
	r := s.r
	r.calls.Add(1)
	r.active.Add(1)
	defer r.active.Add(-1)

	m, err := checkRequest(req)
	if err != nil {
		return err
	}
	w := windowOf(req)

	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := stream.Send(&observer.GetFlowsResponse{
		ResponseTypes: &observer.GetFlowsResponse_NodeStatus{NodeStatus: &relaypb.NodeStatusEvent{
			StateChange: relaypb.NodeState_NODE_CONNECTED,
			NodeNames:   []string{r.cfg.NodeName},
		}},
	}); err != nil {
		return err
	}

	var sub *subscriber
	if req.GetFollow() {
		sub = &subscriber{m: m, ch: make(chan *flowpb.Flow, r.cfg.StreamBuffer), done: stream.Context().Done()}
		defer r.unsubscribe(sub)
	}
	for _, f := range replayed(req, r.subscribe(sub), m, w) {
		if err := send(stream, f); err != nil {
			return err
		}
	}
	if sub == nil {
		return nil
	}
	return follow(stream, sub, w)
}

// checkRequest refuses the requests the simulated relay does not answer, with the codes
// Hubble Relay uses, and returns the request's filters.
func checkRequest(req *observer.GetFlowsRequest) (*matcher, error) {
	switch {
	case req.GetFirst() && req.GetFollow():
		return nil, status.Error(codes.InvalidArgument, "first is incompatible with follow")
	case req.GetNumber() > 0 && (req.GetSince() != nil || req.GetUntil() != nil):
		return nil, status.Error(codes.InvalidArgument, "number is incompatible with since and until")
	case len(req.GetFieldMask().GetPaths()) > 0:
		return nil, status.Error(codes.Unimplemented, "field_mask is not supported by the simulated relay")
	}
	m, err := newMatcher(req.GetWhitelist(), req.GetBlacklist())
	if err != nil {
		if errors.Is(err, errUnsupported) {
			return nil, status.Error(codes.Unimplemented, err.Error())
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return m, nil
}

// timeWindow is a request's since and until; a zero time is no bound.
type timeWindow struct{ since, until time.Time }

func windowOf(req *observer.GetFlowsRequest) timeWindow {
	var w timeWindow
	if ts := req.GetSince(); ts != nil {
		w.since = ts.AsTime()
	}
	if ts := req.GetUntil(); ts != nil {
		w.until = ts.AsTime()
	}
	return w
}

// contains reports whether f's time is within the window.
func (w timeWindow) contains(f *flowpb.Flow) bool {
	t := f.GetTime().AsTime()
	return (w.since.IsZero() || !t.Before(w.since)) && (w.until.IsZero() || !t.After(w.until))
}

// replayed is what a request gets of the buffered flows hist (oldest first): those that
// match m within w, or the first or last number of them when it asks for a number. A
// request that follows, with neither a number nor since, gets none of them.
func replayed(req *observer.GetFlowsRequest, hist []*flowpb.Flow, m *matcher, w timeWindow) []*flowpb.Flow {
	replay := hist[:0:0]
	if req.GetNumber() > 0 || req.GetSince() != nil || !req.GetFollow() {
		for _, f := range hist {
			if m.match(f) && w.contains(f) {
				replay = append(replay, f)
			}
		}
		if n := req.GetNumber(); n > 0 && uint64(len(replay)) > n {
			if req.GetFirst() {
				replay = replay[:n]
			} else {
				replay = replay[uint64(len(replay))-n:]
			}
		}
	}
	return replay
}

// follow sends the flows published to sub within w, until the first one after w's end or
// until the stream's context ends.
func follow(stream grpc.ServerStreamingServer[observer.GetFlowsResponse], sub *subscriber, w timeWindow) error {
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case f := <-sub.ch:
			if !w.until.IsZero() && f.GetTime().AsTime().After(w.until) {
				return nil
			}
			if !w.contains(f) {
				continue
			}
			if err := send(stream, f); err != nil {
				return err
			}
		}
	}
}

func send(stream grpc.ServerStreamingServer[observer.GetFlowsResponse], f *flowpb.Flow) error {
	return stream.Send(&observer.GetFlowsResponse{
		ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
		NodeName:      f.GetNodeName(),
		Time:          f.GetTime(),
	})
}

// flowsRate is the flows per second the routes generate, on average.
func (r *Relay) flowsRate() float64 {
	rate := 0.0
	for _, rt := range r.routes {
		rate += rt.Rate * (2 - min(1, max(0, rt.DropRatio)))
	}
	return rate
}

func (s *service) ServerStatus(context.Context, *observer.ServerStatusRequest) (*observer.ServerStatusResponse, error) {
	r := s.r
	r.mu.Lock()
	num := uint64(r.next)
	if r.full {
		num = uint64(len(r.ring))
	}
	resp := &observer.ServerStatusResponse{
		NumFlows:            num,
		MaxFlows:            uint64(len(r.ring)),
		SeenFlows:           r.seen,
		UptimeNs:            uint64(r.cfg.Now().Sub(r.started)),
		NumConnectedNodes:   wrapperspb.UInt32(1),
		NumUnavailableNodes: wrapperspb.UInt32(0),
		Version:             Version,
		FlowsRate:           r.flowsRate(),
	}
	r.mu.Unlock()
	return resp, nil
}

func (s *service) GetNodes(ctx context.Context, _ *observer.GetNodesRequest) (*observer.GetNodesResponse, error) {
	st, _ := s.ServerStatus(ctx, nil)
	return &observer.GetNodesResponse{Nodes: []*observer.Node{{
		Name:      s.r.cfg.NodeName,
		Version:   Version,
		Address:   s.r.Addr(),
		State:     relaypb.NodeState_NODE_CONNECTED,
		UptimeNs:  st.GetUptimeNs(),
		NumFlows:  st.GetNumFlows(),
		MaxFlows:  st.GetMaxFlows(),
		SeenFlows: st.GetSeenFlows(),
	}}}, nil
}
