//go:build integration

package sim_test

import (
	"context"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
	"governor.dev/governor/test/cluster"
)

const ns = "factory"

func deployment(name, class, egress string, replicas int32) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"class": class}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/" + name}}},
			},
		},
	}
	if egress != "" {
		d.Annotations = map[string]string{sim.WorkloadEgressAnnotation: egress}
	}
	return d
}

// streamedJitter reads n HTTP responses of the critical route, from flows that reach the
// relay after the call, and returns their jitter (mean absolute successive difference), ms.
func streamedJitter(t *testing.T, oc observer.ObserverClient, n int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := oc.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{
		EventType:      []*flowpb.EventTypeFilter{{Type: relay.MessageTypeAccessLog}},
		Reply:          []bool{true},
		SourceWorkload: []*flowpb.Workload{{Name: "robot-control"}},
		SourcePod:      []string{ns + "/"},
	}}})
	require.NoError(t, err)
	var lat []time.Duration
	for len(lat) < n {
		resp, err := st.Recv()
		require.NoError(t, err)
		f := resp.GetFlow()
		if f == nil {
			continue
		}
		require.Equal(t, "robot-control", f.GetSource().GetWorkloads()[0].GetName())
		require.Equal(t, flowpb.L7FlowType_RESPONSE, f.GetL7().GetType())
		lat = append(lat, time.Duration(f.GetL7().GetLatencyNs()))
	}
	return meanAbsDiff(lat)
}

// The bandwidth-coupled plant against a real API server: the jitter of the critical
// workload's streamed flows follows the egress bandwidth granted to the best-effort
// Deployments, as their annotations change.
func TestBandwidthPlantFollowsTheAPIServer(t *testing.T) {
	api := cluster.StartAPIServer(t)
	c, err := client.New(api.Config, client.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))

	const (
		capacity = 1e9
		base     = 500 * time.Microsecond
		gain     = 4 * time.Millisecond
	)
	plant, err := sim.NewBandwidth(sim.BandwidthConfig{
		Client:     c,
		Namespace:  ns,
		Selector:   labels.SelectorFromSet(labels.Set{"class": "best-effort"}),
		Capacity:   capacity,
		Mean:       10 * time.Millisecond,
		BaseJitter: base,
		Gain:       gain,
	})
	require.NoError(t, err)
	go func() { _ = plant.Run(ctx) }()

	r := relaytest.Start(t, relay.Config{Seed: 42, Routes: []relay.Route{{
		Source:      relay.Workload{Namespace: ns, Name: "plc", Labels: map[string]string{"app": "plc"}},
		Destination: relay.Workload{Namespace: ns, Name: "robot-control", Labels: map[string]string{"app": "robot-control"}, Pods: 2},
		Plant:       plant,
		Rate:        2000,
	}}})
	conn, err := grpc.NewClient(r.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	oc := observer.NewObserverClient(conn)

	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	step := func(what string, egress float64) {
		t.Helper()
		want := base + time.Duration(min(1, egress/capacity)*float64(gain))
		require.Eventually(t, func() bool {
			e, _ := plant.Egress()
			return e == egress && plant.Jitter() == want
		}, 10*time.Second, 20*time.Millisecond, "%s: the plant reads egress %v (has %v, err %v)", what, egress, func() float64 { e, _ := plant.Egress(); return e }(), plant.Err())
		got := streamedJitter(t, oc, 800)
		t.Logf("%s: egress %.0f Mbit/s, plant jitter %v, streamed jitter %.3f ms", what, egress/1e6, want, got)
		assert.InEpsilon(t, ms(want), got, 0.15, "%s: streamed jitter", what)
	}

	// No best-effort workload: the base jitter. The critical workload itself (not
	// selected) has no annotation: counted, it would take the whole link.
	require.NoError(t, c.Create(ctx, deployment("robot-control", "critical", "", 2)))
	require.NoError(t, c.Create(ctx, deployment("plc", "critical", "", 1)))
	step("idle link", 0)

	telemetry := deployment("telemetry", "best-effort", "200M", 1)
	backup := deployment("backup", "best-effort", "150M", 2)
	require.NoError(t, c.Create(ctx, telemetry))
	require.NoError(t, c.Create(ctx, backup))
	step("telemetry 200M + backup 2×150M", 500e6)

	patch := func(d *appsv1.Deployment, egress string) {
		t.Helper()
		before := d.DeepCopy()
		if egress == "" {
			delete(d.Annotations, sim.WorkloadEgressAnnotation)
		} else {
			d.Annotations[sim.WorkloadEgressAnnotation] = egress
		}
		require.NoError(t, c.Patch(ctx, d, client.MergeFrom(before)))
	}
	patch(telemetry, "700M")
	step("telemetry raised to 700M: the link is full", 1e9)

	patch(telemetry, "50M")
	patch(backup, "25M")
	step("both lowered", 100e6)

	patch(backup, "")
	step("backup unlimited (no annotation): 2 replicas × the whole link, and more", 2*capacity+50e6)

	// A running Pod of backup with Cilium's own annotation: the Pods count, not replicas.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "backup-0", Namespace: ns, Labels: map[string]string{"app": "backup"},
			Annotations: map[string]string{sim.PodEgressAnnotation: "150M"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/backup"}}},
	}
	require.NoError(t, c.Create(ctx, pod))
	step("backup's one Pod annotated 150M", 200e6)

	require.NoError(t, c.Delete(ctx, telemetry))
	require.NoError(t, c.Delete(ctx, backup))
	step("best-effort Deployments deleted", 0)
	require.NoError(t, plant.Err())
}
