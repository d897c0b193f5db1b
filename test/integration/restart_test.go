//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
)

// TestRestartGoesOnFromStatus stops the controller mid-run and starts a new
// one: the policy's state, the history, the tick count and the target's
// cooldown all carry over from the loop's status.
func TestRestartGoesOnFromStatus(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t)
	e.deployment(t, ns, "telemetry-upload", 1)
	e.pod(t, ns, "telemetry-upload-a", "telemetry-upload")
	spec := v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval: metav1.Duration{Duration: 200 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"cooldown_seconds": 0, "targets": ["telemetry"]}`)}},
		Targets: []v1alpha1.TargetSpec{{Name: "telemetry", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "telemetry-upload"},
			Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}}},
		// The loop's own cooldown outlasts the restart: a restarted
		// controller must not change the target again before it ends.
		Safety:       v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 4 * time.Second}, StaleAfter: metav1.Duration{Duration: time.Minute}, MaxActions: 5},
		HistoryLimit: 50,
	}
	e.loop(t, ns, "qos", spec)
	e.observe(t, ns, "qos", "jitter", "4", time.Now())

	stop := e.startManager(t)
	eventually(t, 15*time.Second, func() (bool, string) {
		l := e.get(t, ns, "qos")
		return l.Status.Tick >= 3 && len(l.Status.Targets) == 1, fmt.Sprintf("tick %d", l.Status.Tick)
	})
	stop()
	before := e.get(t, ns, "qos")
	require.Equal(t, "800M", egressOf(t, e, ns))
	changedAt := before.Status.Targets[0].LastChange.Time

	// While no controller runs, the jitter falls far below target: the
	// policy will want more bandwidth as soon as it ticks again.
	e.observe(t, ns, "qos", "jitter", "0.1", time.Now())
	e.startManager(t)
	eventually(t, 15*time.Second, func() (bool, string) {
		l := e.get(t, ns, "qos")
		return l.Status.Tick >= before.Status.Tick+3, fmt.Sprintf("tick %d", l.Status.Tick)
	})
	after := e.get(t, ns, "qos")

	// History and ticks go on from where they were.
	require.Greater(t, len(after.Status.History), len(before.Status.History))
	assert.Equal(t, before.Status.History, after.Status.History[:len(before.Status.History)])
	first := after.Status.History[len(before.Status.History)]
	assert.Equal(t, before.Status.Tick+1, first.Tick)

	// The policy's state carried over: the first ewma mixes the new
	// observation with the remembered 4 ms (0.7 × 0.1 + 0.3 × 4 = 1.27: hold),
	// where a lost state would give 0.1 (far below target: raise).
	assert.Equal(t, []string{"No Event"}, first.Events)

	// The cooldown carried over: no change until 4 s after the last one.
	for _, h := range after.Status.History[len(before.Status.History):] {
		if h.Time.Time.Before(changedAt.Add(4 * time.Second)) {
			assert.Empty(t, h.Applied, "tick %d acted inside the cooldown", h.Tick)
		}
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		v := egressOf(t, e, ns)
		return v == "810M", "egress " + v
	})
}

func egressOf(t *testing.T, e *env, ns string) string {
	var d appsv1.Deployment
	require.NoError(t, e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "telemetry-upload"}, &d))
	return d.Annotations["governor.dev/egress-bandwidth"]
}
