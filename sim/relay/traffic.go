package relay

import (
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"governor.dev/governor/sim"
)

// Workload is one side of a route: a workload and its Pods, as Hubble describes them in a
// flow's Endpoint.
type Workload struct {
	Namespace string
	// Name is the workload's name (its Pods are Name-<hash>-<suffix>).
	Name string
	// Kind is the workload's kind; "Deployment" when empty.
	Kind string
	// Labels are the Pods' labels, reported as Cilium does ("k8s:key=value", with
	// k8s:io.kubernetes.pod.namespace added).
	Labels map[string]string
	// Pods is how many Pods the workload has; 1 when 0.
	Pods int
}

// Route is HTTP traffic from a client workload to a server workload.
type Route struct {
	Source, Destination Workload
	// Plant draws each exchange's latency; nil is a constant 1ms.
	Plant sim.Plant
	// Rate is HTTP exchanges per second. Each is two L7 flows (the request, then the
	// response carrying latency_ns), or one DROPPED flow.
	Rate float64
	// ErrorRatio is the share of responses with status 503 (the rest are 200).
	ErrorRatio float64
	// DropRatio is the share of exchanges whose request is dropped by the datapath (an
	// L3/L4 flow with verdict DROPPED, reason REACHED_EDT_RATE_LIMITING_DROP_HORIZON).
	DropRatio float64
	// Method and Path of the requests: GET and / when empty.
	Method, Path string
	// Port the server listens on: 8080 when 0.
	Port uint32
}

// endpoint is a Pod of a workload, as a flow names it.
type endpoint struct {
	ep *flowpb.Endpoint
	ip string
}

// route is a Route ready to generate flows.
type route struct {
	Route
	rng      *rand.Rand
	src, dst []endpoint
	acc      float64
	url      string
	port     uint32
	sport    uint32
	method   string
	nodeName string
}

// endpoints builds the Pods of workload number idx.
func endpoints(w Workload, idx int) []endpoint {
	kind := w.Kind
	if kind == "" {
		kind = "Deployment"
	}
	n := max(w.Pods, 1)
	ls := make([]string, 0, len(w.Labels)+1)
	for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
		ls = append(ls, "k8s:"+k+"="+w.Labels[k])
	}
	ls = append(ls, "k8s:io.kubernetes.pod.namespace="+w.Namespace)
	slices.Sort(ls)
	h := fnv.New32a()
	h.Write([]byte(w.Namespace + "/" + w.Name))
	sum := h.Sum32()
	identity := 256 + sum%60000
	out := make([]endpoint, n)
	for i := range out {
		out[i] = endpoint{
			ep: &flowpb.Endpoint{
				ID:        uint32(100*(idx+1) + i),
				Identity:  identity,
				Namespace: w.Namespace,
				Labels:    ls,
				PodName:   fmt.Sprintf("%s-%07x-%05d", w.Name, sum&0xfffffff, i),
				Workloads: []*flowpb.Workload{{Name: w.Name, Kind: kind}},
			},
			ip: fmt.Sprintf("10.%d.%d.%d", 1+idx/250, idx%250, 10+i),
		}
	}
	return out
}

func newRoute(r Route, i int, seed uint64, nodeName string) *route {
	rt := &route{
		Route:    r,
		rng:      rand.New(rand.NewPCG(seed, uint64(i))),
		src:      endpoints(r.Source, 2*i),
		dst:      endpoints(r.Destination, 2*i+1),
		port:     r.Port,
		method:   r.Method,
		nodeName: nodeName,
	}
	if rt.Plant == nil {
		rt.Plant = sim.NewScripted(time.Millisecond, 0)
	}
	if rt.port == 0 {
		rt.port = 8080
	}
	if rt.method == "" {
		rt.method = "GET"
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	rt.url = fmt.Sprintf("http://%s.%s:%d%s", r.Destination.Name, r.Destination.Namespace, rt.port, path)
	return rt
}

// exchange generates the flows of one exchange whose response is observed at t (a drop is
// observed at t too); the request is stamped t - latency.
func (rt *route) exchange(t time.Time, uuid func() string) []*flowpb.Flow {
	r := rt.rng
	src := rt.src[r.IntN(len(rt.src))]
	dst := rt.dst[r.IntN(len(rt.dst))]
	rt.sport = 32768 + (rt.sport+1)%28000
	ip := &flowpb.IP{Source: src.ip, Destination: dst.ip, IpVersion: flowpb.IPVersion_IPv4}
	tcp := func(sport, dport uint32) *flowpb.Layer4 {
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: sport, DestinationPort: dport}}}
	}
	if r.Float64() < rt.DropRatio {
		reason := flowpb.DropReason_REACHED_EDT_RATE_LIMITING_DROP_HORIZON
		return []*flowpb.Flow{{
			Time:             timestamppb.New(t),
			Uuid:             uuid(),
			Verdict:          flowpb.Verdict_DROPPED,
			DropReason:       uint32(reason),
			DropReasonDesc:   reason,
			IP:               ip,
			L4:               tcp(rt.sport, rt.port),
			Source:           src.ep,
			Destination:      dst.ep,
			Type:             flowpb.FlowType_L3_L4,
			NodeName:         rt.nodeName,
			EventType:        &flowpb.CiliumEventType{Type: MessageTypeDrop, SubType: int32(reason)},
			TrafficDirection: flowpb.TrafficDirection_EGRESS,
			Summary:          "TCP Flags: SYN",
		}}
	}
	lat := rt.Plant.Latency(t, r)
	code := uint32(200)
	if r.Float64() < rt.ErrorRatio {
		code = 503
	}
	req := &flowpb.Flow{
		Time:        timestamppb.New(t.Add(-lat)),
		Uuid:        uuid(),
		Verdict:     flowpb.Verdict_FORWARDED,
		IP:          ip,
		L4:          tcp(rt.sport, rt.port),
		Source:      src.ep,
		Destination: dst.ep,
		Type:        flowpb.FlowType_L7,
		NodeName:    rt.nodeName,
		L7: &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{
			Method: rt.method, Url: rt.url, Protocol: "HTTP/1.1",
		}}},
		IsReply:          wrapperspb.Bool(false),
		EventType:        &flowpb.CiliumEventType{Type: MessageTypeAccessLog},
		TrafficDirection: flowpb.TrafficDirection_INGRESS,
		Summary:          fmt.Sprintf("HTTP/1.1 %s %s", rt.method, rt.url), //nolint:staticcheck // deprecated, but Hubble still sets it
	}
	// Hubble's responses come from the server: source and destination are swapped.
	resp := &flowpb.Flow{
		Time:        timestamppb.New(t),
		Uuid:        uuid(),
		Verdict:     flowpb.Verdict_FORWARDED,
		IP:          &flowpb.IP{Source: dst.ip, Destination: src.ip, IpVersion: flowpb.IPVersion_IPv4},
		L4:          tcp(rt.port, rt.sport),
		Source:      dst.ep,
		Destination: src.ep,
		Type:        flowpb.FlowType_L7,
		NodeName:    rt.nodeName,
		L7: &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, LatencyNs: uint64(lat), Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{
			Code: code, Method: rt.method, Url: rt.url, Protocol: "HTTP/1.1",
		}}},
		IsReply:          wrapperspb.Bool(true),
		Reply:            true, //nolint:staticcheck // deprecated, but Hubble still sets it
		EventType:        &flowpb.CiliumEventType{Type: MessageTypeAccessLog},
		TrafficDirection: flowpb.TrafficDirection_INGRESS,
		Summary:          fmt.Sprintf("HTTP/1.1 %d %dms (%s %s)", code, lat.Milliseconds(), rt.method, rt.url), //nolint:staticcheck // deprecated, but Hubble still sets it
	}
	return []*flowpb.Flow{req, resp}
}
