package hubble

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"governor.dev/governor/api/v1alpha1"
)

// The request: responses from the destination back to the source (Hubble's response flows
// come from the server), drops from the source to the destination.
func TestFlowsRequestFields(t *testing.T) {
	req, err := FlowsRequest(&v1alpha1.HubbleCollector{
		Source:      &v1alpha1.FlowEndpoint{Namespace: "factory", Labels: map[string]string{"tier": "plc", "app": "plc"}},
		Destination: &v1alpha1.FlowEndpoint{Namespace: "factory", Workload: "robot-control"},
		HTTPStatus:  []string{"5+", "200", "5+"},
	})
	require.NoError(t, err)
	want := &observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{
		EventType:        []*flowpb.EventTypeFilter{{Type: 129}},
		Reply:            []bool{true},
		SourcePod:        []string{"factory/"},
		SourceWorkload:   []*flowpb.Workload{{Name: "robot-control"}},
		DestinationPod:   []string{"factory/"},
		DestinationLabel: []string{"app=plc,tier=plc"},
		HttpStatusCode:   []string{"200", "5+"},
	}, {
		Verdict:             []flowpb.Verdict{flowpb.Verdict_DROPPED},
		SourcePod:           []string{"factory/"},
		SourceLabel:         []string{"app=plc,tier=plc"},
		DestinationPod:      []string{"factory/"},
		DestinationWorkload: []*flowpb.Workload{{Name: "robot-control"}},
	}}}
	assert.Empty(t, cmpDiff(want, req))

	empty, err := FlowsRequest(&v1alpha1.HubbleCollector{})
	require.NoError(t, err)
	assert.Empty(t, cmpDiff(&observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{
		{EventType: []*flowpb.EventTypeFilter{{Type: 129}}, Reply: []bool{true}},
		{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}},
	}}, empty))
}

func TestFlowsRequestIsCanonical(t *testing.T) {
	a, err := FlowsRequest(&v1alpha1.HubbleCollector{
		Destination: &v1alpha1.FlowEndpoint{Workload: "w", Labels: map[string]string{"a": "1", "b": "2", "c": "3"}},
		HTTPStatus:  []string{"503", "5+"},
	})
	require.NoError(t, err)
	b, err := FlowsRequest(&v1alpha1.HubbleCollector{
		Destination: &v1alpha1.FlowEndpoint{Workload: "w", Labels: map[string]string{"c": "3", "b": "2", "a": "1"}},
		HTTPStatus:  []string{"5+", "503", "503"},
		Source:      &v1alpha1.FlowEndpoint{},
	})
	require.NoError(t, err)
	ka, err := key(a)
	require.NoError(t, err)
	kb, err := key(b)
	require.NoError(t, err)
	assert.Equal(t, ka, kb)

	c, err := FlowsRequest(&v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: "w2"}})
	require.NoError(t, err)
	kc, err := key(c)
	require.NoError(t, err)
	assert.NotEqual(t, ka, kc)
}

func TestFlowsRequestRefusesBadSpecs(t *testing.T) {
	_, err := FlowsRequest(&v1alpha1.HubbleCollector{HTTPStatus: []string{"5xx"}})
	assert.ErrorContains(t, err, `httpStatus "5xx"`)
	_, err = FlowsRequest(&v1alpha1.HubbleCollector{Source: &v1alpha1.FlowEndpoint{Labels: map[string]string{"a b": "c"}}})
	assert.ErrorContains(t, err, "source labels")
	_, err = FlowsRequest(nil)
	assert.Error(t, err)
}

func cmpDiff(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	return "want " + prototext.Format(want) + "\ngot  " + prototext.Format(got)
}
