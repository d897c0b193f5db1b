package hubble

import (
	"fmt"
	"regexp"
	"slices"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/labels"

	"governor.dev/governor/api/v1alpha1"
)

// MessageTypeAccessLog is the Cilium monitor event type of L7 flows (hubble observe --type l7).
const MessageTypeAccessLog = 129

var (
	httpStatusFull   = regexp.MustCompile(`^[1-5][0-9]{2}$`)
	httpStatusPrefix = regexp.MustCompile(`^[1-5][0-9]?\+$`)
)

// FlowsRequest is the GetFlows request a Hubble collector streams with: Follow, and a
// whitelist of two filters (a flow is streamed when it matches either):
//
//  1. the HTTP responses of the exchanges from Source to Destination, which carry
//     latency_ns: event_type [{type: 129}] (L7), reply [true], and, because Hubble's
//     response flows go from the server back to the client, the collector's Destination
//     as source_pod / source_workload / source_label and its Source as destination_pod /
//     destination_workload / destination_label; http_status_code from HTTPStatus;
//  2. the drops from Source to Destination: verdict [DROPPED], with Source as source_* and
//     Destination as destination_* (any event type, so datapath drops count too).
//
// A FlowEndpoint becomes: Namespace "ns" → *_pod ["ns/"] (every Pod in ns); Workload "w" →
// *_workload [{name: w}] (any kind); Labels {k: v, ...} → *_label ["k=v,..."] (one selector,
// so every label must match; keys sorted). HTTPStatus values are sorted and deduplicated.
// The request is canonical: equal specs give equal requests (the stream's key).
func FlowsRequest(h *v1alpha1.HubbleCollector) (*observer.GetFlowsRequest, error) {
	if h == nil {
		return nil, fmt.Errorf("no hubble collector")
	}
	resp := &flowpb.FlowFilter{
		EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeAccessLog}},
		Reply:     []bool{true},
	}
	drop := &flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}
	for _, s := range []struct {
		e         *v1alpha1.FlowEndpoint
		name      string
		pod, lbl  []*[]string
		workloads []*[]*flowpb.Workload
	}{
		{h.Source, "source",
			[]*[]string{&resp.DestinationPod, &drop.SourcePod}, []*[]string{&resp.DestinationLabel, &drop.SourceLabel},
			[]*[]*flowpb.Workload{&resp.DestinationWorkload, &drop.SourceWorkload}},
		{h.Destination, "destination",
			[]*[]string{&resp.SourcePod, &drop.DestinationPod}, []*[]string{&resp.SourceLabel, &drop.DestinationLabel},
			[]*[]*flowpb.Workload{&resp.SourceWorkload, &drop.DestinationWorkload}},
	} {
		if s.e == nil {
			continue
		}
		if s.e.Namespace != "" {
			for _, p := range s.pod {
				*p = []string{s.e.Namespace + "/"}
			}
		}
		if s.e.Workload != "" {
			for _, w := range s.workloads {
				*w = []*flowpb.Workload{{Name: s.e.Workload}}
			}
		}
		if len(s.e.Labels) > 0 {
			if _, err := labels.ValidatedSelectorFromSet(s.e.Labels); err != nil {
				return nil, fmt.Errorf("%s labels: %w", s.name, err)
			}
			sel := labels.Set(s.e.Labels).String() // keys sorted
			for _, l := range s.lbl {
				*l = []string{sel}
			}
		}
	}
	if len(h.HTTPStatus) > 0 {
		codes := slices.Clone(h.HTTPStatus)
		slices.Sort(codes)
		codes = slices.Compact(codes)
		for _, c := range codes {
			if !httpStatusFull.MatchString(c) && !httpStatusPrefix.MatchString(c) {
				return nil, fmt.Errorf("httpStatus %q: not a status code (\"200\") or prefix (\"5+\", \"40+\")", c)
			}
		}
		resp.HttpStatusCode = codes
	}
	return &observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{resp, drop}}, nil
}

// key is the canonical form of a request: the key of its stream.
func key(req *observer.GetFlowsRequest) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	return string(b), err
}
