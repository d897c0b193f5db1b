//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
)

const egressAnnotation = "kubernetes.io/egress-bandwidth"

// TestControlLoops runs one controller manager against one API server and
// many loops, each in a namespace of its own.
func TestControlLoops(t *testing.T) {
	e := newEnv(t)
	e.startManager(t)
	ctx := context.Background()

	deploymentReplicas := func(ns, name string) int32 {
		var d appsv1.Deployment
		require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &d))
		return *d.Spec.Replicas
	}
	podEgress := func(ns, name string) string {
		var p corev1.Pod
		require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &p))
		return p.Annotations[egressAnnotation]
	}

	t.Run("bandwidth policy lowers the live Pod annotation within a tick", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "telemetry-upload", 2)
		e.pod(t, ns, "telemetry-upload-a", "telemetry-upload")
		e.pod(t, ns, "telemetry-upload-b", "telemetry-upload")
		spec := v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running,
			Interval: metav1.Duration{Duration: 250 * time.Millisecond},
			Policy: v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision",
				Params: &apiextensionsv1.JSON{Raw: []byte(`{"target_jitter_ms": 2.0, "cooldown_seconds": 30, "targets": ["telemetry"]}`)}},
			Targets: []v1alpha1.TargetSpec{{Name: "telemetry", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "telemetry-upload"},
				Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M"), Mode: v1alpha1.Live}}},
			Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 30 * time.Second}, StaleAfter: metav1.Duration{Duration: 15 * time.Second}, MaxActions: 5},
		}
		e.loop(t, ns, "factory-qos", spec)
		// Before any observation, the jitter metric is missing: no action.
		eventually(t, 20*time.Second, func() (bool, string) {
			h, desc := lastEntry(e.get(t, ns, "factory-qos"))
			return strings.Contains(joined(h.Events), "Missing jitter"), desc
		})
		assert.Empty(t, podEgress(ns, "telemetry-upload-a"))

		observed := time.Now()
		e.observe(t, ns, "factory-qos", "jitter", "3.5", observed)
		eventually(t, 15*time.Second, func() (bool, string) {
			return podEgress(ns, "telemetry-upload-a") == "800M" && podEgress(ns, "telemetry-upload-b") == "800M",
				"pods: " + podEgress(ns, "telemetry-upload-a") + ", " + podEgress(ns, "telemetry-upload-b")
		})
		// The status write follows the actuation within the same tick.
		var l *v1alpha1.ControlLoop
		var acted *v1alpha1.HistoryEntry
		eventually(t, 15*time.Second, func() (bool, string) {
			l = e.get(t, ns, "factory-qos")
			for i := range l.Status.History {
				if len(l.Status.History[i].Applied) > 0 {
					acted = &l.Status.History[i]
				}
			}
			return acted != nil, "no history entry with the applied action"
		})
		assert.Contains(t, acted.Events, "High jitter")
		assert.JSONEq(t, `{"bandwidth": {"egress": "800M"}}`, string(acted.Applied[0].Set.Raw))
		assert.Contains(t, acted.Applied[0].Reason, "jitter ewma 3.5 ms above target 2.0 ms")
		assert.True(t, acted.Time.After(observed.Add(-time.Second)), "acted on the observation, within a tick")
		assert.Equal(t, "bandwidth@"+shippedRevision(t, "bandwidth"), l.Status.PolicyRevision)
		assert.Equal(t, v1alpha1.PhaseRunning, l.Status.Phase)
		require.Len(t, l.Status.Targets, 1)
		assert.NotNil(t, l.Status.Targets[0].LastChange)
		assert.Contains(t, string(l.Status.State.Raw), `"ewma":3.5`)
		// The status's JSON objects are atomic maps: the API server tracks
		// each as one field of the controller's managedFields, not each key
		// within (which it would compute again at every status write).
		assertWholeInStatusFields(t, l, "lastInput", "state")

		// The policy's cooldown holds further changes, and the value stays.
		tick := l.Status.Tick
		eventually(t, 15*time.Second, func() (bool, string) {
			l := e.get(t, ns, "factory-qos")
			h, desc := lastEntry(l)
			return l.Status.Tick >= tick+3 && strings.Contains(joined(h.Events), "Cooldown"), desc
		})
		assert.Equal(t, "800M", podEgress(ns, "telemetry-upload-a"))
	})

	t.Run("guard clamps bandwidth to the declared maximum", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "telemetry-upload", 1)
		e.pod(t, ns, "telemetry-upload-a", "telemetry-upload")
		target := deploymentTarget("telemetry", "telemetry-upload")
		target.Bandwidth = &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}
		e.loop(t, ns, "greedy", echoSpec(`{"actions": [{"target": "telemetry", "set": {"bandwidth": {"egress": "5G"}}, "reason": "more"}]}`, target))
		eventually(t, 15*time.Second, func() (bool, string) {
			v := podEgress(ns, "telemetry-upload-a")
			return v == "1G", "pod egress " + v
		})
		var l *v1alpha1.ControlLoop
		eventually(t, 15*time.Second, func() (bool, string) {
			l = e.get(t, ns, "greedy")
			_, desc := lastEntry(l)
			return len(l.Status.History) > 0 && len(l.Status.History[0].Guard) > 0, desc
		})
		var guardNotes []string
		for _, h := range l.Status.History {
			guardNotes = append(guardNotes, h.Guard...)
		}
		assert.Contains(t, guardNotes, "Clamped telemetry: egress bandwidth 5G lowered to the maximum 1G")
		eventually(t, 15*time.Second, func() (bool, string) {
			for _, ev := range e.events(t, ns, "greedy") {
				if ev.Reason == "Clamped" && ev.Type == corev1.EventTypeNormal && strings.Contains(ev.Note, "lowered to the maximum") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("events: %v", e.events(t, ns, "greedy"))
		})
	})

	t.Run("replicas are clamped to bounds and one step", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 3)
		target := deploymentTarget("web", "web")
		target.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10, MaxStep: 2}
		e.loop(t, ns, "scaler", echoSpec(`{"actions": [{"target": "web", "set": {"replicas": 50}}]}`, target))
		eventually(t, 15*time.Second, func() (bool, string) {
			n := deploymentReplicas(ns, "web")
			return n == 5, fmt.Sprintf("replicas %d", n)
		})
		// The tick's record is written after it acts: wait for it.
		eventually(t, 15*time.Second, func() (bool, string) {
			var notes []string
			for _, h := range e.get(t, ns, "scaler").Status.History {
				notes = append(notes, h.Guard...)
			}
			return slices.Contains(notes, "Clamped web: replicas 50 lowered to the maximum 10") &&
				slices.Contains(notes, "Clamped web: replicas 10 limited to one step (2) above 3"), joined(notes)
		})
		// The loop's cooldown (1h) holds the target: it stays at 5.
		eventually(t, 15*time.Second, func() (bool, string) {
			h, desc := lastEntry(e.get(t, ns, "scaler"))
			return strings.Contains(joined(h.Guard), "Refused web: in cooldown"), desc
		})
		assert.Equal(t, int32(5), deploymentReplicas(ns, "web"))
	})

	t.Run("container resources and HPA bounds", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 2)
		e.deployment(t, ns, "api", 2)
		minR := int32(2)
		require.NoError(t, e.c.Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
				MinReplicas:    &minR, MaxReplicas: 8,
			},
		}))
		web := deploymentTarget("web", "web")
		web.Resources = &v1alpha1.ResourceBounds{Containers: []string{"app"},
			Memory: &v1alpha1.QuantityRange{Min: resource.MustParse("64Mi"), Max: resource.MustParse("1Gi")}}
		api := deploymentTarget("api", "api")
		api.HPA = &v1alpha1.HPABounds{Min: 2, Max: 20}
		e.loop(t, ns, "sizer", echoSpec(`{"actions": [
			{"target": "web", "set": {"resources": {"app": {"requests": {"memory": "192Mi"}}}}},
			{"target": "api", "set": {"hpa": {"minReplicas": 3, "maxReplicas": 30}}}]}`, web, api))
		eventually(t, 15*time.Second, func() (bool, string) {
			var d appsv1.Deployment
			require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &d))
			var h autoscalingv2.HorizontalPodAutoscaler
			require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "api"}, &h))
			res := d.Spec.Template.Spec.Containers[0].Resources
			mem, cpu := res.Requests["memory"], res.Requests["cpu"]
			ok := mem.String() == "192Mi" && cpu.String() == "250m" && *h.Spec.MinReplicas == 3 && h.Spec.MaxReplicas == 20
			return ok, fmt.Sprintf("memory %s cpu %s hpa %d..%d", mem.String(), cpu.String(), *h.Spec.MinReplicas, h.Spec.MaxReplicas)
		})
	})

	t.Run("guard refusals change nothing and say why", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 3)
		e.deployment(t, ns, "api", 2)
		require.NoError(t, e.c.Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api-hpa"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api"},
				MaxReplicas:    8,
			},
		}))
		web := deploymentTarget("web", "web")
		web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
		api := deploymentTarget("api", "api")
		api.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}

		cases := []struct{ name, decision, want string }{
			{"unknown-target", `{"actions": [{"target": "payments", "set": {"replicas": 4}}]}`, `decision rejected: invalid decision test/echo/decision from echo@echo-1: actions[0].target: "payments" is not one of the loop's targets [api, web]`},
			{"no-bounds", `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "100M"}}}]}`, "Refused web: bandwidth: the target declares no bandwidth bounds"},
			{"hpa-owns", `{"actions": [{"target": "api", "set": {"replicas": 4}}]}`, "Refused api: replicas: HPA api-hpa owns the replicas of this target"},
			{"stale", `{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 4}}]}`, "Refused web: metric cpu is stale or missing"},
			{"wrong-type", `{"actions": [{"target": "web", "set": {"replicas": "four"}}]}`, `actions[0].set.replicas: must be an integer, got string "four"`},
		}
		for _, tc := range cases {
			e.loop(t, ns, tc.name, echoSpec(tc.decision, web, api))
		}
		e.observe(t, ns, "stale", "cpu", "95", time.Now().Add(-time.Hour))
		for _, tc := range cases {
			eventually(t, 15*time.Second, func() (bool, string) {
				h, desc := lastEntry(e.get(t, ns, tc.name))
				return strings.Contains(h.Error+joined(h.Guard), tc.want), tc.name + ": " + desc
			})
			h, _ := lastEntry(e.get(t, ns, tc.name))
			assert.Empty(t, h.Applied, tc.name)
		}
		assert.Equal(t, int32(3), deploymentReplicas(ns, "web"))
		assert.Equal(t, int32(2), deploymentReplicas(ns, "api"))
		var reasons []string
		for _, ev := range e.events(t, ns, "hpa-owns") {
			reasons = append(reasons, ev.Type+"/"+ev.Reason)
		}
		assert.Contains(t, reasons, "Warning/Refused")
	})

	t.Run("Passive decides and records but never acts", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 3)
		web := deploymentTarget("web", "web")
		web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
		spec := echoSpec(`{"actions": [{"target": "web", "set": {"replicas": 6}}], "events": ["High cpu"]}`, web)
		spec.State = v1alpha1.Passive
		e.loop(t, ns, "shadow", spec)
		eventually(t, 15*time.Second, func() (bool, string) {
			l := e.get(t, ns, "shadow")
			return l.Status.Tick >= 3, fmt.Sprintf("tick %d", l.Status.Tick)
		})
		l := e.get(t, ns, "shadow")
		assert.Equal(t, v1alpha1.PhasePassive, l.Status.Phase)
		for _, h := range l.Status.History {
			require.Len(t, h.Actions, 1, "the decision is recorded")
			assert.Empty(t, h.Applied)
			assert.Contains(t, h.Guard, "Passive: 1 action(s) not applied")
		}
		assert.Equal(t, int32(3), deploymentReplicas(ns, "web"))
	})

	t.Run("Paused does nothing; edits to the spec apply at the next tick", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 3)
		web := deploymentTarget("web", "web")
		web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
		spec := echoSpec(`{"actions": [{"target": "web", "set": {"replicas": 4}}]}`, web)
		spec.State = v1alpha1.Paused
		spec.Safety.Cooldown = metav1.Duration{}
		e.loop(t, ns, "editable", spec)
		eventually(t, 15*time.Second, func() (bool, string) {
			l := e.get(t, ns, "editable")
			return l.Status.Phase == v1alpha1.PhasePaused, string(l.Status.Phase)
		})
		time.Sleep(time.Second) // five intervals: a paused loop must not tick
		l := e.get(t, ns, "editable")
		assert.Zero(t, l.Status.Tick)
		assert.Equal(t, int32(3), deploymentReplicas(ns, "web"))

		e.update(t, l, func() { l.Spec.State = v1alpha1.Running })
		eventually(t, 15*time.Second, func() (bool, string) {
			return deploymentReplicas(ns, "web") == 4, fmt.Sprintf("replicas %d", deploymentReplicas(ns, "web"))
		})

		e.update(t, l, func() {
			l.Spec.Policy.Params = &apiextensionsv1.JSON{Raw: []byte(`{"decision": {"actions": [{"target": "web", "set": {"replicas": 7}}]}}`)}
			l.Spec.Interval = metav1.Duration{Duration: 100 * time.Millisecond}
		})
		eventually(t, 15*time.Second, func() (bool, string) {
			return deploymentReplicas(ns, "web") == 7, fmt.Sprintf("replicas %d", deploymentReplicas(ns, "web"))
		})
		eventually(t, 15*time.Second, func() (bool, string) {
			l := e.get(t, ns, "editable")
			return l.Generation == l.Status.ObservedGeneration, fmt.Sprintf("generation %d observed %d", l.Generation, l.Status.ObservedGeneration)
		})
	})

	t.Run("an unknown bundle degrades the loop and says so", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		spec := echoSpec(`{}`)
		spec.Policy.Bundle = "nope"
		e.loop(t, ns, "lost", spec)
		eventually(t, 15*time.Second, func() (bool, string) {
			l := e.get(t, ns, "lost")
			for _, c := range l.Status.Conditions {
				if c.Type == v1alpha1.ConditionPolicyReady && c.Status == metav1.ConditionFalse && c.Reason == "UnknownBundle" {
					return l.Status.Phase == v1alpha1.PhaseDegraded, string(l.Status.Phase)
				}
			}
			return false, fmt.Sprintf("%v", l.Status.Conditions)
		})
	})

	t.Run("deleting a loop stops it", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t)
		e.deployment(t, ns, "web", 3)
		web := deploymentTarget("web", "web")
		web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
		spec := echoSpec(`{"actions": [{"target": "web", "set": {"replicas": 4}}]}`, web)
		e.loop(t, ns, "doomed", spec)
		eventually(t, 15*time.Second, func() (bool, string) {
			return deploymentReplicas(ns, "web") == 4, "not acted yet"
		})
		require.NoError(t, e.c.Delete(ctx, &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "doomed"}}))
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
		e.update(t, d, func() { d.Spec.Replicas = ptr(int32(2)) })
		time.Sleep(time.Second)
		assert.Equal(t, int32(2), deploymentReplicas(ns, "web"), "no loop acts on the target any more")
	})
}

func ptr[T any](v T) *T { return &v }

// shippedRevision is the revision of a shipped bundle, as its .manifest
// names it.
func shippedRevision(t *testing.T, bundle string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, "policies", bundle, ".manifest"))
	require.NoError(t, err)
	var manifest struct {
		Revision string `json:"revision"`
	}
	require.NoError(t, json.Unmarshal(raw, &manifest))
	return manifest.Revision
}

// assertWholeInStatusFields asserts that the status subresource's
// managedFields hold each named status field as one field, without the keys
// within it.
func assertWholeInStatusFields(t *testing.T, l *v1alpha1.ControlLoop, names ...string) {
	t.Helper()
	for _, name := range names {
		found := false
		for _, mf := range l.ManagedFields {
			if mf.Subresource != "status" || mf.FieldsV1 == nil {
				continue
			}
			var fields map[string]map[string]any
			require.NoError(t, json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields))
			if within, ok := fields["f:status"]["f:"+name]; ok {
				found = true
				assert.Empty(t, within, "%s's keys in %s's managedFields", name, mf.Manager)
			}
		}
		assert.True(t, found, "status.%s in no status managedFields entry", name)
	}
}
