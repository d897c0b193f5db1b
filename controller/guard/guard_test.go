package guard

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func q(s string) resource.Quantity { return resource.MustParse(s) }
func qp(s string) *resource.Quantity {
	v := resource.MustParse(s)
	return &v
}
func ip(i int64) *int64 { return &i }

func spec() *v1alpha1.ControlLoopSpec {
	step := q("100M")
	return &v1alpha1.ControlLoopSpec{
		Targets: []v1alpha1.TargetSpec{
			{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"},
				Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 10, MaxStep: 2},
				Resources: &v1alpha1.ResourceBounds{Containers: []string{"app"},
					CPU:    &v1alpha1.QuantityRange{Min: q("100m"), Max: q("2")},
					Memory: &v1alpha1.QuantityRange{Min: q("64Mi"), Max: q("1Gi"), MaxStep: qp("128Mi")}}},
			{Name: "telemetry", Ref: v1alpha1.TargetRef{Name: "telemetry-upload"},
				Bandwidth: &v1alpha1.BandwidthBounds{Min: q("10M"), Max: q("1000M"), MaxStep: &step}},
			{Name: "api", Ref: v1alpha1.TargetRef{Name: "api"}, HPA: &v1alpha1.HPABounds{Min: 2, Max: 20}},
			{Name: "batch", Ref: v1alpha1.TargetRef{Name: "batch"}, Replicas: &v1alpha1.ReplicaBounds{Min: 0, Max: 5}},
		},
		Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 30 * time.Second}, MaxActions: 5},
	}
}

func input() Input {
	return Input{
		Now:  now,
		Spec: spec(),
		Targets: map[string]Target{
			"web": {Exists: true, Replicas: ip(3), Containers: map[string]corev1.ResourceRequirements{
				"app": {Requests: corev1.ResourceList{"cpu": q("250m"), "memory": q("128Mi")}, Limits: corev1.ResourceList{"memory": q("256Mi")}}}},
			"telemetry": {Exists: true, Replicas: ip(2), Egress: qp("500M")},
			"api":       {Exists: true, Replicas: ip(4), HPA: &HPA{Name: "api", MinReplicas: 2, MaxReplicas: 8}},
			"batch":     {Exists: true, Replicas: ip(1)},
		},
		Metrics: map[string]bool{"jitter": true},
	}
}

func decide(actions ...bundles.Action) bundles.Decision { return bundles.Decision{Actions: actions} }

func replicas(target string, n int64) bundles.Action {
	return bundles.Action{Target: target, Set: bundles.Set{Replicas: &n}}
}

func egress(target, v string) bundles.Action {
	return bundles.Action{Target: target, Metric: "jitter", Set: bundles.Set{Bandwidth: &bundles.Bandwidth{Egress: qp(v)}}}
}

func notes(r Result) []string {
	out := make([]string, len(r.Notes))
	for i, n := range r.Notes {
		out[i] = n.String()
	}
	return out
}

func TestWithinBoundsPassesUnchanged(t *testing.T) {
	r := Check(input(), decide(replicas("web", 4), egress("telemetry", "400M")))
	require.Len(t, r.Actions, 2)
	assert.Equal(t, int64(4), *r.Actions[0].Set.Replicas)
	assert.Equal(t, "400M", r.Actions[1].Set.Bandwidth.Egress.String())
	assert.Empty(t, r.Notes)
}

func TestClampsToBoundsAndStep(t *testing.T) {
	cases := []struct {
		name   string
		action bundles.Action
		check  func(t *testing.T, a bundles.Action)
		note   string
	}{
		{"replicas above max and step", replicas("web", 50), func(t *testing.T, a bundles.Action) {
			assert.Equal(t, int64(5), *a.Set.Replicas)
		}, "replicas 50 lowered to the maximum 10"},
		{"replicas step", replicas("web", 9), func(t *testing.T, a bundles.Action) {
			assert.Equal(t, int64(5), *a.Set.Replicas)
		}, "replicas 9 limited to one step (2) above 3"},
		{"replicas below min", replicas("web", 0), func(t *testing.T, a bundles.Action) {
			assert.Equal(t, int64(1), *a.Set.Replicas)
		}, "replicas 0 raised to the minimum 1"},
		{"bandwidth above max", egress("telemetry", "2G"), func(t *testing.T, a bundles.Action) {
			assert.Equal(t, "600M", a.Set.Bandwidth.Egress.String())
		}, "egress bandwidth 2G lowered to the maximum 1G"},
		{"bandwidth below min", egress("telemetry", "1M"), func(t *testing.T, a bundles.Action) {
			assert.Equal(t, "400M", a.Set.Bandwidth.Egress.String(), "min 10M, then one step of 100M below 500M")
		}, "egress bandwidth 1M raised to the minimum 10M"},
		{"memory step", bundles.Action{Target: "web", Set: bundles.Set{Resources: map[string]bundles.ContainerResources{
			"app": {Limits: map[string]resource.Quantity{"memory": q("1Gi")}}}}}, func(t *testing.T, a bundles.Action) {
			got := a.Set.Resources["app"].Limits["memory"]
			assert.Equal(t, "384Mi", got.String())
		}, "app limits.memory 1Gi limited to one step (128Mi) above 256Mi"},
		{"cpu above max", bundles.Action{Target: "web", Set: bundles.Set{Resources: map[string]bundles.ContainerResources{
			"app": {Requests: map[string]resource.Quantity{"cpu": q("4")}}}}}, func(t *testing.T, a bundles.Action) {
			got := a.Set.Resources["app"].Requests["cpu"]
			assert.Equal(t, "2", got.String())
		}, "app requests.cpu 4 lowered to the maximum 2"},
		{"hpa bounds", bundles.Action{Target: "api", Set: bundles.Set{HPA: &bundles.HPABounds{MinReplicas: ip(1), MaxReplicas: ip(50)}}}, func(t *testing.T, a bundles.Action) {
			assert.Equal(t, int64(2), *a.Set.HPA.MinReplicas)
			assert.Equal(t, int64(20), *a.Set.HPA.MaxReplicas)
		}, "hpa maxReplicas 50 lowered to the maximum 20"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(input(), decide(tc.action))
			require.Len(t, r.Actions, 1, notes(r))
			tc.check(t, r.Actions[0])
			assert.Contains(t, strings.Join(notes(r), "\n"), "Clamped "+tc.action.Target+": "+tc.note)
		})
	}
}

func TestRefusals(t *testing.T) {
	cooling := input()
	cooling.LastChange = map[string]time.Time{"batch": now.Add(-10 * time.Second)}
	in := input()
	in.Metrics = map[string]bool{"jitter": false, "cpu": true}
	missing := input().Targets
	missing["web"] = Target{Exists: false}

	cases := []struct {
		name   string
		in     Input
		action bundles.Action
		why    string
	}{
		{"unknown target", input(), replicas("cache", 2), "not one of the loop's targets"},
		{"target missing", Input{Now: now, Spec: spec(), Targets: missing}, replicas("web", 4), "Deployment web does not exist"},
		{"no bounds for the field", input(), egress("web", "100M"), "declares no bandwidth bounds"},
		{"replicas owned by an HPA", func() Input {
			i := input()
			i.Spec.Targets[2].Replicas = &v1alpha1.ReplicaBounds{Max: 9}
			return i
		}(), replicas("api", 5), "HPA api owns the replicas"},
		{"cooldown", cooling, replicas("batch", 2), "in cooldown for 20s more (cooldown 30s)"},
		{"stale metric named", in, egress("telemetry", "400M"), "metric jitter is stale or missing"},
		{"stale metric, none named", in, replicas("web", 4), "the action names no metric and metrics [jitter] are stale or missing"},
		{"metric not there at all", in, bundles.Action{Target: "web", Metric: "memory", Set: bundles.Set{Replicas: ip(4)}}, "metric memory is stale or missing"},
		{"container not allowed", input(), bundles.Action{Target: "web", Set: bundles.Set{Resources: map[string]bundles.ContainerResources{
			"sidecar": {Requests: map[string]resource.Quantity{"cpu": q("1")}}}}}, "container sidecar is not one of [app]"},
		{"resource without bounds", input(), bundles.Action{Target: "web", Set: bundles.Set{Resources: map[string]bundles.ContainerResources{
			"app": {Requests: map[string]resource.Quantity{"ephemeral-storage": q("1Gi")}}}}}, "declares no ephemeral-storage bounds"},
		{"request above limit", input(), bundles.Action{Target: "web", Set: bundles.Set{Resources: map[string]bundles.ContainerResources{
			"app": {Requests: map[string]resource.Quantity{"memory": q("256Mi")}, Limits: map[string]resource.Quantity{"memory": q("200Mi")}}}}}, "would request 256Mi memory above its limit 200Mi"},
		{"hpa min above max", input(), bundles.Action{Target: "api", Set: bundles.Set{HPA: &bundles.HPABounds{MinReplicas: ip(10)}}}, "minReplicas 10 would be above maxReplicas 8"},
		{"hpa on a target without one", input(), bundles.Action{Target: "web", Set: bundles.Set{HPA: &bundles.HPABounds{MinReplicas: ip(2)}}}, "declares no hpa bounds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.in, decide(tc.action))
			assert.Empty(t, r.Actions)
			require.Len(t, r.Notes, 1)
			assert.Equal(t, Refused, r.Notes[0].Verdict)
			assert.Contains(t, r.Notes[0].Message, tc.why)
		})
	}
}

func TestCooldownEndsAndStaleOtherMetricsDoNotBlock(t *testing.T) {
	in := input()
	in.LastChange = map[string]time.Time{"batch": now.Add(-30 * time.Second)}
	in.Metrics = map[string]bool{"cpu": false, "memory": true}
	r := Check(in, decide(bundles.Action{Target: "batch", Metric: "memory", Set: bundles.Set{Replicas: ip(2)}}))
	require.Len(t, r.Actions, 1, notes(r))
}

func TestOneChangePerTargetAndMaxActions(t *testing.T) {
	in := input()
	in.Spec.Safety.MaxActions = 2
	r := Check(in, decide(replicas("web", 4), replicas("web", 5), egress("telemetry", "450M"), replicas("batch", 2)))
	require.Len(t, r.Actions, 2)
	assert.Equal(t, []string{
		"Refused web: already changed this tick",
		"Refused batch: maxActions 2 reached this tick",
	}, notes(r))
}

func TestUnchangedActionsAreDroppedAndDoNotCount(t *testing.T) {
	in := input()
	in.Spec.Safety.MaxActions = 1
	r := Check(in, decide(replicas("web", 3), egress("telemetry", "500M"), replicas("batch", 2)))
	require.Len(t, r.Actions, 1)
	assert.Equal(t, "batch", r.Actions[0].Target)
	assert.Equal(t, []string{"Unchanged web: already as asked", "Unchanged telemetry: already as asked"}, notes(r))

	// Clamped to where it already is: nothing to do either.
	r = Check(input(), decide(replicas("batch", 1)))
	assert.Empty(t, r.Actions)
}

func TestUnknownCurrentValueSkipsTheStepButNotTheBounds(t *testing.T) {
	in := input()
	in.Targets["telemetry"] = Target{Exists: true}
	r := Check(in, decide(egress("telemetry", "5G")))
	require.Len(t, r.Actions, 1)
	assert.Zero(t, r.Actions[0].Set.Bandwidth.Egress.Cmp(q("1000M")), r.Actions[0].Set.Bandwidth.Egress.String())
}
