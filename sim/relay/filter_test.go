package relay

import (
	"errors"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func testFlow() *flowpb.Flow {
	return &flowpb.Flow{
		Verdict: flowpb.Verdict_FORWARDED,
		Source: &flowpb.Endpoint{Namespace: "factory", PodName: "plc-1234-0",
			Labels:    []string{"k8s:app=plc", "k8s:io.kubernetes.pod.namespace=factory", "reserved:host"},
			Workloads: []*flowpb.Workload{{Name: "plc", Kind: "Deployment"}}},
		Destination: &flowpb.Endpoint{Namespace: "factory", PodName: "robot-control-99-1",
			Labels:    []string{"k8s:app=robot-control", "k8s:tier=rt", "k8s:io.kubernetes.pod.namespace=factory"},
			Workloads: []*flowpb.Workload{{Name: "robot-control", Kind: "StatefulSet"}}},
		Type:      flowpb.FlowType_L7,
		L7:        &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, LatencyNs: 1e6, Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: 503}}},
		IsReply:   wrapperspb.Bool(true),
		EventType: &flowpb.CiliumEventType{Type: MessageTypeAccessLog},
	}
}

// The filters apply as Hubble's (cilium/pkg/hubble/filters) for the fields supported.
func TestFiltersMatchAsHubble(t *testing.T) {
	f := testFlow()
	drop := &flowpb.Flow{Verdict: flowpb.Verdict_DROPPED, Source: f.Source, Destination: f.Destination,
		EventType: &flowpb.CiliumEventType{Type: MessageTypeDrop, SubType: 162}}
	for _, c := range []struct {
		name string
		ff   *flowpb.FlowFilter
		want bool
		flow *flowpb.Flow
	}{
		{"empty filter", &flowpb.FlowFilter{}, true, nil},
		{"namespace", &flowpb.FlowFilter{SourcePod: []string{"factory/"}}, true, nil},
		{"other namespace", &flowpb.FlowFilter{SourcePod: []string{"office/"}}, false, nil},
		{"pod prefix", &flowpb.FlowFilter{DestinationPod: []string{"factory/robot-"}}, true, nil},
		{"pod prefix, any namespace", &flowpb.FlowFilter{DestinationPod: []string{"/robot-"}}, true, nil},
		{"pod without namespace is in default", &flowpb.FlowFilter{DestinationPod: []string{"robot-"}}, false, nil},
		{"one of several pods", &flowpb.FlowFilter{SourcePod: []string{"office/", "factory/plc"}}, true, nil},
		{"workload", &flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Name: "robot-control"}}}, true, nil},
		{"workload and kind", &flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Name: "robot-control", Kind: "StatefulSet"}}}, true, nil},
		{"workload, other kind", &flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Name: "robot-control", Kind: "Deployment"}}}, false, nil},
		{"workload on the other side", &flowpb.FlowFilter{SourceWorkload: []*flowpb.Workload{{Name: "robot-control"}}}, false, nil},
		{"label any source", &flowpb.FlowFilter{DestinationLabel: []string{"app=robot-control"}}, true, nil},
		{"label k8s source", &flowpb.FlowFilter{DestinationLabel: []string{"k8s:app=robot-control"}}, true, nil},
		{"label other source", &flowpb.FlowFilter{DestinationLabel: []string{"container:app=robot-control"}}, false, nil},
		{"labels all of a selector", &flowpb.FlowFilter{DestinationLabel: []string{"app=robot-control,tier=rt"}}, true, nil},
		{"labels all of a selector, one wrong", &flowpb.FlowFilter{DestinationLabel: []string{"app=robot-control,tier=batch"}}, false, nil},
		{"labels one of the selectors", &flowpb.FlowFilter{DestinationLabel: []string{"tier=batch", "app=robot-control"}}, true, nil},
		{"label set-based", &flowpb.FlowFilter{DestinationLabel: []string{"app in (web, robot-control)"}}, true, nil},
		{"label absent", &flowpb.FlowFilter{DestinationLabel: []string{"!tier"}}, false, nil},
		{"reserved label", &flowpb.FlowFilter{SourceLabel: []string{"reserved:host"}}, true, nil},
		{"l7", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeAccessLog}}}, true, nil},
		{"drop events", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeDrop}}}, false, nil},
		{"drop events of a subtype", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeDrop, SubType: 162, MatchSubType: true}}}, true, drop},
		{"drop events of another subtype", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeDrop, SubType: 133, MatchSubType: true}}}, false, drop},
		{"status", &flowpb.FlowFilter{HttpStatusCode: []string{"503"}}, true, nil},
		{"status prefix", &flowpb.FlowFilter{HttpStatusCode: []string{"5+"}}, true, nil},
		{"status two-digit prefix", &flowpb.FlowFilter{HttpStatusCode: []string{"50+"}}, true, nil},
		{"other status", &flowpb.FlowFilter{HttpStatusCode: []string{"2+", "404"}}, false, nil},
		{"status of a drop", &flowpb.FlowFilter{HttpStatusCode: []string{"5+"}}, false, drop},
		{"reply", &flowpb.FlowFilter{Reply: []bool{true}}, true, nil},
		{"not reply", &flowpb.FlowFilter{Reply: []bool{false}}, false, nil},
		{"a drop of unknown direction is not a reply", &flowpb.FlowFilter{Reply: []bool{false}}, true, drop},
		{"verdict", &flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}, true, drop},
		{"other verdict", &flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}, false, nil},
		{"every field must match", &flowpb.FlowFilter{
			SourcePod: []string{"factory/"}, DestinationWorkload: []*flowpb.Workload{{Name: "robot-control"}},
			EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeAccessLog}}, HttpStatusCode: []string{"2+"},
		}, false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			fn, err := buildFilter(c.ff)
			require.NoError(t, err)
			fl := c.flow
			if fl == nil {
				fl = f
			}
			assert.Equal(t, c.want, fn(fl))
		})
	}
}

func TestMatcherWhitelistAndBlacklist(t *testing.T) {
	f := testFlow()
	m, err := newMatcher([]*flowpb.FlowFilter{
		{SourcePod: []string{"office/"}},
		{SourcePod: []string{"factory/"}},
	}, nil)
	require.NoError(t, err)
	assert.True(t, m.match(f), "one whitelist filter matches")
	m, err = newMatcher([]*flowpb.FlowFilter{{SourcePod: []string{"factory/"}}}, []*flowpb.FlowFilter{{HttpStatusCode: []string{"5+"}}})
	require.NoError(t, err)
	assert.False(t, m.match(f), "the blacklist wins")
	m, err = newMatcher(nil, []*flowpb.FlowFilter{{HttpStatusCode: []string{"2+"}}})
	require.NoError(t, err)
	assert.True(t, m.match(f), "no whitelist: everything not blacklisted")
}

func TestFiltersRefused(t *testing.T) {
	_, err := buildFilter(&flowpb.FlowFilter{SourceIp: []string{"10.0.0.1"}, SourcePod: []string{"x/"}})
	require.ErrorIs(t, err, errUnsupported)
	assert.Contains(t, err.Error(), "source_ip")

	_, err = buildFilter(&flowpb.FlowFilter{HttpStatusCode: []string{"5xx"}})
	require.Error(t, err)
	assert.False(t, errors.Is(err, errUnsupported))
	assert.Contains(t, err.Error(), `invalid status code prefix: "5xx"`)

	_, err = buildFilter(&flowpb.FlowFilter{HttpStatusCode: []string{"5+"}, EventType: []*flowpb.EventTypeFilter{{Type: MessageTypeDrop}}})
	require.ErrorContains(t, err, "requires the event type filter to only match 'l7' events")

	_, err = buildFilter(&flowpb.FlowFilter{SourcePod: []string{""}})
	require.ErrorContains(t, err, "name must not be empty")

	_, err = buildFilter(&flowpb.FlowFilter{SourceLabel: []string{"app in (a"}})
	require.ErrorContains(t, err, "invalid source label filter")
}
