package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
)

func dial(t *testing.T, r *relay.Relay) observer.ObserverClient {
	t.Helper()
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return observer.NewObserverClient(conn)
}

// recv reads n flows from a GetFlows call, skipping other responses.
func recv(t *testing.T, oc observer.ObserverClient, req *observer.GetFlowsRequest, n int) []*flowpb.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := oc.GetFlows(ctx, req)
	require.NoError(t, err)
	var out []*flowpb.Flow
	for len(out) < n {
		resp, err := st.Recv()
		require.NoError(t, err, "after %d flows", len(out))
		if f := resp.GetFlow(); f != nil {
			require.Equal(t, f.GetNodeName(), resp.GetNodeName())
			out = append(out, f)
		}
	}
	return out
}

var (
	plc   = relay.Workload{Namespace: "factory", Name: "plc", Labels: map[string]string{"app": "plc"}}
	robot = relay.Workload{Namespace: "factory", Name: "robot-control", Labels: map[string]string{"app": "robot-control"}, Pods: 3}
	tele  = relay.Workload{Namespace: "factory", Name: "telemetry", Labels: map[string]string{"app": "telemetry"}, Kind: "StatefulSet"}
	cloud = relay.Workload{Namespace: "cloud", Name: "ingest", Labels: map[string]string{"app": "ingest"}}
)

// The flows are shaped as Hubble's: a request from the client and a response from the
// server (source and destination swapped) carrying latency_ns, the request stamped that much
// earlier; workloads, pods, labels and namespaces on both endpoints.
func TestFlowsAreShapedAsHubbles(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 1, Routes: []relay.Route{{
		Source: plc, Destination: robot, Rate: 500, Plant: sim.NewScripted(4*time.Millisecond, 0), Path: "/move",
	}}})
	fs := recv(t, dial(t, r), &observer.GetFlowsRequest{Follow: true}, 40)
	var req, resp *flowpb.Flow
	for i := 0; i+1 < len(fs); i++ {
		if fs[i].GetL7().GetType() == flowpb.L7FlowType_REQUEST {
			req, resp = fs[i], fs[i+1]
			break
		}
	}
	require.NotNil(t, req)

	assert.Equal(t, flowpb.Verdict_FORWARDED, req.GetVerdict())
	assert.Equal(t, flowpb.FlowType_L7, req.GetType())
	assert.Equal(t, int32(relay.MessageTypeAccessLog), req.GetEventType().GetType())
	assert.False(t, req.GetIsReply().GetValue())
	assert.Equal(t, "plc", req.GetSource().GetWorkloads()[0].GetName())
	assert.Equal(t, "Deployment", req.GetSource().GetWorkloads()[0].GetKind())
	assert.Equal(t, "factory", req.GetSource().GetNamespace())
	assert.Contains(t, req.GetSource().GetLabels(), "k8s:app=plc")
	assert.Contains(t, req.GetSource().GetLabels(), "k8s:io.kubernetes.pod.namespace=factory")
	assert.Regexp(t, `^plc-[0-9a-f]{7}-\d+$`, req.GetSource().GetPodName())
	assert.Equal(t, "robot-control", req.GetDestination().GetWorkloads()[0].GetName())
	assert.Equal(t, "GET", req.GetL7().GetHttp().GetMethod())
	assert.Equal(t, "http://robot-control.factory:8080/move", req.GetL7().GetHttp().GetUrl())
	assert.Zero(t, req.GetL7().GetLatencyNs())

	assert.Equal(t, flowpb.L7FlowType_RESPONSE, resp.GetL7().GetType())
	assert.True(t, resp.GetIsReply().GetValue())
	assert.Equal(t, "robot-control", resp.GetSource().GetWorkloads()[0].GetName(), "responses come from the server")
	assert.Equal(t, "plc", resp.GetDestination().GetWorkloads()[0].GetName())
	assert.Equal(t, req.GetIP().GetSource(), resp.GetIP().GetDestination())
	assert.Equal(t, uint64(4e6), resp.GetL7().GetLatencyNs())
	assert.Equal(t, uint32(200), resp.GetL7().GetHttp().GetCode())
	assert.Equal(t, 4*time.Millisecond, resp.GetTime().AsTime().Sub(req.GetTime().AsTime()))
	assert.NotEqual(t, req.GetUuid(), resp.GetUuid())
}

// The same seed gives the same traffic; another seed other traffic.
func TestTrafficIsRepeatableWithASeed(t *testing.T) {
	run := func(seed uint64) []string {
		// From the first flow on (since the epoch, from a buffer that holds
		// them all): a stream that starts late must not start elsewhere.
		r := relaytest.Start(t, relay.Config{Seed: seed, Buffer: 1 << 16, Routes: []relay.Route{{
			Source: plc, Destination: robot, Rate: 2000, ErrorRatio: 0.2, DropRatio: 0.1,
			Plant: sim.NewScripted(5*time.Millisecond, 2*time.Millisecond),
		}}})
		var out []string
		for _, f := range recv(t, dial(t, r), &observer.GetFlowsRequest{Follow: true, Since: timestamppb.New(time.Unix(0, 0))}, 300) {
			out = append(out, fmt.Sprintf("%s %s>%s %d %d %s", f.GetVerdict(), f.GetSource().GetPodName(), f.GetDestination().GetPodName(),
				f.GetL7().GetLatencyNs(), f.GetL7().GetHttp().GetCode(), f.GetUuid()))
		}
		r.Stop()
		return out
	}
	a, b, c := run(7), run(7), run(8)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
}

// Rates and ratios: exchanges per second, the share of 503s and of drops.
func TestRateErrorsAndDrops(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 3, Routes: []relay.Route{{
		Source: plc, Destination: robot, Rate: 1000, ErrorRatio: 0.1, DropRatio: 0.05,
	}}})
	oc := dial(t, r)
	start := time.Now()
	fs := recv(t, oc, &observer.GetFlowsRequest{Follow: true}, 3000)
	elapsed := time.Since(start)
	var reqs, resps, errs, drops int
	for _, f := range fs {
		switch {
		case f.GetVerdict() == flowpb.Verdict_DROPPED:
			drops++
			assert.Equal(t, flowpb.DropReason_REACHED_EDT_RATE_LIMITING_DROP_HORIZON, f.GetDropReasonDesc())
			assert.Equal(t, flowpb.FlowType_L3_L4, f.GetType())
		case f.GetL7().GetType() == flowpb.L7FlowType_REQUEST:
			reqs++
		default:
			resps++
			if f.GetL7().GetHttp().GetCode() == 503 {
				errs++
			}
		}
	}
	exchanges := float64(reqs + drops)
	assert.InEpsilon(t, 1000, exchanges/elapsed.Seconds(), 0.25, "exchanges per second")
	assert.InDelta(t, 0.05, float64(drops)/exchanges, 0.02, "drop ratio")
	assert.InDelta(t, 0.1, float64(errs)/float64(resps), 0.03, "error ratio")
}

// GetFlows applies its whitelist: two routes stream, a client asks for one.
func TestGetFlowsFilters(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 4, Routes: []relay.Route{
		{Source: plc, Destination: robot, Rate: 500},
		{Source: tele, Destination: cloud, Rate: 500},
	}})
	oc := dial(t, r)
	fs := recv(t, oc, &observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{
		SourceWorkload: []*flowpb.Workload{{Name: "robot-control"}},
		EventType:      []*flowpb.EventTypeFilter{{Type: relay.MessageTypeAccessLog}},
		Reply:          []bool{true},
	}}}, 200)
	for _, f := range fs {
		require.Equal(t, "robot-control", f.GetSource().GetWorkloads()[0].GetName())
		require.Equal(t, flowpb.L7FlowType_RESPONSE, f.GetL7().GetType())
	}
	fs = recv(t, oc, &observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{
		DestinationPod: []string{"cloud/"},
	}}, Blacklist: []*flowpb.FlowFilter{{Reply: []bool{true}}}}, 100)
	for _, f := range fs {
		require.Equal(t, "ingest", f.GetDestination().GetWorkloads()[0].GetName())
		require.False(t, f.GetIsReply().GetValue())
	}
	assert.Equal(t, int64(2), r.GetFlowsCalls())
}

// Without follow, GetFlows replays the buffer: number (last or first), since and until.
func TestGetFlowsReplaysTheBuffer(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Buffer: 8})
	oc := dial(t, r)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		r.Publish(&flowpb.Flow{Time: timestamppb.New(t0.Add(time.Duration(i) * time.Second)), Uuid: fmt.Sprint(i), NodeName: "n"})
	}
	ids := func(req *observer.GetFlowsRequest) []string {
		st, err := oc.GetFlows(context.Background(), req)
		require.NoError(t, err)
		var out []string
		for {
			resp, err := st.Recv()
			if err != nil {
				require.ErrorContains(t, err, "EOF")
				return out
			}
			if f := resp.GetFlow(); f != nil {
				out = append(out, f.GetUuid())
			}
		}
	}
	assert.Equal(t, []string{"2", "3", "4", "5", "6", "7", "8", "9"}, ids(&observer.GetFlowsRequest{}), "the whole buffer (8)")
	assert.Equal(t, []string{"7", "8", "9"}, ids(&observer.GetFlowsRequest{Number: 3}))
	assert.Equal(t, []string{"2", "3"}, ids(&observer.GetFlowsRequest{Number: 2, First: true}))
	assert.Equal(t, []string{"5", "6", "7"}, ids(&observer.GetFlowsRequest{
		Since: timestamppb.New(t0.Add(5 * time.Second)), Until: timestamppb.New(t0.Add(7 * time.Second))}))

	st, err := oc.ServerStatus(context.Background(), &observer.ServerStatusRequest{})
	require.NoError(t, err)
	assert.Equal(t, uint64(8), st.GetNumFlows())
	assert.Equal(t, uint64(8), st.GetMaxFlows())
	assert.Equal(t, uint64(10), st.GetSeenFlows())
	assert.Equal(t, uint32(1), st.GetNumConnectedNodes().GetValue())
	assert.Equal(t, relay.Version, st.GetVersion())
}

// Follow with since: the buffered flows since then, then the live ones, none twice.
func TestGetFlowsFollowSince(t *testing.T) {
	r := relaytest.Start(t, relay.Config{})
	oc := dial(t, r)
	t0 := time.Now()
	for i := range 5 {
		r.Publish(&flowpb.Flow{Time: timestamppb.New(t0.Add(time.Duration(i) * time.Millisecond)), Uuid: fmt.Sprint(i)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := oc.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true, Since: timestamppb.New(t0.Add(3 * time.Millisecond))})
	require.NoError(t, err)
	var got []string
	for len(got) < 4 {
		resp, err := st.Recv()
		require.NoError(t, err)
		if f := resp.GetFlow(); f != nil {
			got = append(got, f.GetUuid())
		} else {
			require.NotNil(t, resp.GetNodeStatus(), "the relay reports its node first")
			require.Equal(t, int64(1), r.ActiveStreams())
			r.Publish(&flowpb.Flow{Time: timestamppb.New(t0.Add(10 * time.Millisecond)), Uuid: "10"},
				&flowpb.Flow{Time: timestamppb.New(t0.Add(11 * time.Millisecond)), Uuid: "11"})
		}
	}
	assert.Equal(t, []string{"3", "4", "10", "11"}, got)
}

func TestGetFlowsRefusesWhatItCannotDo(t *testing.T) {
	r := relaytest.Start(t, relay.Config{})
	oc := dial(t, r)
	for _, c := range []struct {
		req  *observer.GetFlowsRequest
		code codes.Code
		msg  string
	}{
		{&observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{SourceIp: []string{"10.0.0.1"}}}}, codes.Unimplemented, "source_ip"},
		{&observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{HttpStatusCode: []string{"5xx"}}}}, codes.InvalidArgument, "5xx"},
		{&observer.GetFlowsRequest{Follow: true, First: true}, codes.InvalidArgument, "first"},
	} {
		st, err := oc.GetFlows(context.Background(), c.req)
		require.NoError(t, err)
		_, err = st.Recv()
		assert.Equal(t, c.code, status.Code(err), "%v", err)
		assert.ErrorContains(t, err, c.msg)
	}
	_, err := oc.GetAgentEvents(context.Background(), &observer.GetAgentEventsRequest{})
	if err == nil {
		// A server stream reports its status on the first Recv.
		st, _ := oc.GetAgentEvents(context.Background(), &observer.GetAgentEventsRequest{})
		_, err = st.Recv()
	}
	assert.Equal(t, codes.Unimplemented, status.Code(err))
}

// Stop fails the streams; Restart serves again on the same address.
func TestStopAndRestart(t *testing.T) {
	r := relaytest.Start(t, relay.Config{Seed: 5, Routes: []relay.Route{{Source: plc, Destination: robot, Rate: 200}}})
	oc := dial(t, r)
	addr := r.Addr()
	st, err := oc.GetFlows(context.Background(), &observer.GetFlowsRequest{Follow: true})
	require.NoError(t, err)
	_, err = st.Recv()
	require.NoError(t, err)
	r.Stop()
	for err == nil {
		_, err = st.Recv()
	}
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	relaytest.Restart(t, r)
	assert.Equal(t, addr, r.Addr())
	fs := recv(t, oc, &observer.GetFlowsRequest{Follow: true}, 10)
	assert.Len(t, fs, 10)
	assert.Equal(t, int64(2), r.GetFlowsCalls())
}
