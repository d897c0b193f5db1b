//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller"
	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
)

// TestJitterFromHubbleDrivesBandwidth closes the loop through the real
// Hubble API: latency jitter rising in the relay's stream makes the
// bandwidth policy lower a best-effort workload's egress bandwidth, and
// jitter falling raises it again.
func TestJitterFromHubbleDrivesBandwidth(t *testing.T) {
	e := newEnv(t)
	plant := sim.NewScripted(5*time.Millisecond, 100*time.Microsecond)
	r := relaytest.Start(t, relay.Config{Seed: 1, Routes: []relay.Route{{
		Source:      relay.Workload{Namespace: "factory", Name: "edge-gateway"},
		Destination: relay.Workload{Namespace: "factory", Name: "robot-control"},
		Plant:       plant, Rate: 200,
	}, {
		// Traffic the loop does not watch: its jitter must not count.
		Source:      relay.Workload{Namespace: "factory", Name: "edge-gateway"},
		Destination: relay.Workload{Namespace: "factory", Name: "telemetry-upload"},
		Plant:       sim.NewScripted(50*time.Millisecond, 40*time.Millisecond), Rate: 100,
	}}})
	// The relay's traffic is in namespace factory, the loop in one of its
	// own: the operator lets loops observe factory.
	e.startManagerWith(t, controller.Options{HubbleRelay: r.Addr(), Scope: collectors.Scope{Observe: []string{"factory"}}})

	ns := e.namespace(t)
	e.deployment(t, ns, "telemetry-upload", 1)
	e.pod(t, ns, "telemetry-upload-a", "telemetry-upload")
	e.loop(t, ns, "factory-qos", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: metav1.Duration{Duration: 250 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"jitter": "jitter", "target_jitter_ms": 2.0, "cooldown_seconds": 1, "targets": ["telemetry"]}`)}},
		Collectors: []v1alpha1.CollectorSpec{{Name: "jitter", Hubble: &v1alpha1.HubbleCollector{
			Destination: &v1alpha1.FlowEndpoint{Namespace: "factory", Workload: "robot-control"},
			Window:      metav1.Duration{Duration: 2 * time.Second}}}},
		Targets: []v1alpha1.TargetSpec{{Name: "telemetry", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "telemetry-upload"},
			Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}}},
		Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: time.Second}, StaleAfter: metav1.Duration{Duration: 5 * time.Second}, MaxActions: 5},
	})
	egress := func() (int64, string) {
		var d appsv1.Deployment
		require.NoError(t, e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "telemetry-upload"}, &d))
		v := d.Annotations["governor.dev/egress-bandwidth"]
		if v == "" {
			return 1_000_000_000, "unset (the maximum)"
		}
		q := resource.MustParse(v)
		return q.Value(), v
	}

	// Calm: the loop sees fresh jitter far below target and, already at the
	// maximum, changes nothing.
	eventually(t, 15*time.Second, func() (bool, string) {
		h, desc := lastEntry(e.get(t, ns, "factory-qos"))
		return len(h.Events) == 1 && h.Events[0] == "Low jitter", desc
	})
	_, s := egress()
	require.Equal(t, "unset (the maximum)", s)

	// Jitter rises: egress bandwidth comes down, step after step.
	plant.SetLatency(5*time.Millisecond, 6*time.Millisecond)
	var low int64
	eventually(t, 20*time.Second, func() (bool, string) {
		v, s := egress()
		low = v
		return v <= 640_000_000, "egress " + s
	})

	// Jitter falls well below target: bandwidth goes back up, from its
	// lowest (the 2 s window still holds the high jitter for a while: the
	// loop may lower it once more, a cooldown after the last change).
	plant.SetLatency(5*time.Millisecond, 100*time.Microsecond)
	eventually(t, 20*time.Second, func() (bool, string) {
		v, s := egress()
		low = min(low, v)
		_, last := lastEntry(e.get(t, ns, "factory-qos"))
		return v > low, fmt.Sprintf("egress %s, lowest %d; last tick %s", s, low, last)
	})
	require.Equal(t, int64(1), r.GetFlowsCalls(), "one stream to the relay")
}
