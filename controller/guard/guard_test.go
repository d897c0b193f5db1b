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

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
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

// target is a target as read at a tick, with the current state of each field given.
func target(sp *v1alpha1.ControlLoopSpec, name string, current map[string]any) *actuators.Target {
	for i := range sp.Targets {
		if sp.Targets[i].Name == name {
			t := &actuators.Target{Name: name, Spec: &sp.Targets[i], Exists: true, Current: current}
			t.Workload = workload.Of("factory", t.Spec.Ref)
			return t
		}
	}
	panic(name)
}

func input() Input {
	sp := spec()
	return Input{
		Now:       now,
		Spec:      sp,
		Actuators: builtin.Actuators,
		Targets: map[string]*actuators.Target{
			"web": target(sp, "web", map[string]any{"replicas": ip(3), "resources": resources.Containers{
				"app": {Requests: corev1.ResourceList{"cpu": q("250m"), "memory": q("128Mi")}, Limits: corev1.ResourceList{"memory": q("256Mi")}}}}),
			"telemetry": target(sp, "telemetry", map[string]any{"replicas": ip(2), "bandwidth": bandwidth.Value{Egress: qp("500M")}}),
			"api":       target(sp, "api", map[string]any{"replicas": ip(4), "hpa": &hpa.State{Name: "api", MinReplicas: 2, MaxReplicas: 8}}),
			"batch":     target(sp, "batch", map[string]any{"replicas": ip(1)}),
		},
		Metrics: map[string]bool{"jitter": true},
	}
}

func decide(actions ...decision.Action) decision.Decision { return decision.Decision{Actions: actions} }

func replicas(target string, n int64) decision.Action {
	return decision.Action{Target: target, Set: decision.Set{"replicas": n}}
}

func egress(target, v string) decision.Action {
	return decision.Action{Target: target, Metric: "jitter", Set: decision.Set{"bandwidth": bandwidth.Value{Egress: qp(v)}}}
}

func containers(name string, requests, limits corev1.ResourceList) decision.Set {
	return decision.Set{"resources": resources.Containers{name: {Requests: requests, Limits: limits}}}
}

func replicasOf(a decision.Action) int64 { return a.Set["replicas"].(int64) }
func egressOf(a decision.Action) *resource.Quantity {
	return a.Set["bandwidth"].(bandwidth.Value).Egress
}
func hpaOf(a decision.Action) hpa.Bounds { return a.Set["hpa"].(hpa.Bounds) }
func containerOf(a decision.Action, name string) resources.Container {
	return a.Set["resources"].(resources.Containers)[name]
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
	assert.Equal(t, int64(4), replicasOf(r.Actions[0]))
	assert.Equal(t, "400M", egressOf(r.Actions[1]).String())
	assert.Empty(t, r.Notes)
}

func TestClampsToBoundsAndStep(t *testing.T) {
	cases := []struct {
		name   string
		action decision.Action
		check  func(t *testing.T, a decision.Action)
		note   string
	}{
		{"replicas above max and step", replicas("web", 50), func(t *testing.T, a decision.Action) {
			assert.Equal(t, int64(5), replicasOf(a))
		}, "replicas 50 lowered to the maximum 10"},
		{"replicas step", replicas("web", 9), func(t *testing.T, a decision.Action) {
			assert.Equal(t, int64(5), replicasOf(a))
		}, "replicas 9 limited to one step (2) above 3"},
		{"replicas below min", replicas("web", 0), func(t *testing.T, a decision.Action) {
			assert.Equal(t, int64(1), replicasOf(a))
		}, "replicas 0 raised to the minimum 1"},
		{"bandwidth above max", egress("telemetry", "2G"), func(t *testing.T, a decision.Action) {
			assert.Equal(t, "600M", egressOf(a).String())
		}, "egress bandwidth 2G lowered to the maximum 1G"},
		{"bandwidth below min", egress("telemetry", "1M"), func(t *testing.T, a decision.Action) {
			assert.Equal(t, "400M", egressOf(a).String(), "min 10M, then one step of 100M below 500M")
		}, "egress bandwidth 1M raised to the minimum 10M"},
		{"memory step", decision.Action{Target: "web", Set: containers("app", nil, corev1.ResourceList{"memory": q("1Gi")})}, func(t *testing.T, a decision.Action) {
			got := containerOf(a, "app").Limits["memory"]
			assert.Equal(t, "384Mi", got.String())
		}, "app limits.memory 1Gi limited to one step (128Mi) above 256Mi"},
		{"cpu above max", decision.Action{Target: "web", Set: containers("app", corev1.ResourceList{"cpu": q("4")}, nil)}, func(t *testing.T, a decision.Action) {
			got := containerOf(a, "app").Requests["cpu"]
			assert.Equal(t, "2", got.String())
		}, "app requests.cpu 4 lowered to the maximum 2"},
		{"hpa bounds", decision.Action{Target: "api", Set: decision.Set{"hpa": hpa.Bounds{MinReplicas: ip(1), MaxReplicas: ip(50)}}}, func(t *testing.T, a decision.Action) {
			assert.Equal(t, int64(2), *hpaOf(a).MinReplicas)
			assert.Equal(t, int64(20), *hpaOf(a).MaxReplicas)
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
	missing["web"] = &actuators.Target{Name: "web", Exists: false}

	cases := []struct {
		name   string
		in     Input
		action decision.Action
		why    string
	}{
		{"unknown target", input(), replicas("cache", 2), "not one of the loop's targets"},
		{"target missing", Input{Now: now, Spec: spec(), Actuators: builtin.Actuators, Targets: missing}, replicas("web", 4), "Deployment web does not exist"},
		{"no bounds for the field", input(), egress("web", "100M"), "declares no bandwidth bounds"},
		{"replicas owned by an HPA", func() Input {
			i := input()
			i.Spec.Targets[2].Replicas = &v1alpha1.ReplicaBounds{Max: 9}
			return i
		}(), replicas("api", 5), "HPA api owns the replicas"},
		{"cooldown", cooling, replicas("batch", 2), "in cooldown for 20s more (cooldown 30s)"},
		{"stale metric named", in, egress("telemetry", "400M"), "metric jitter is stale or missing"},
		{"stale metric, none named", in, replicas("web", 4), "the action names no metric and metrics [jitter] are stale or missing"},
		{"metric not there at all", in, decision.Action{Target: "web", Metric: "memory", Set: decision.Set{"replicas": int64(4)}}, "metric memory is stale or missing"},
		{"container not allowed", input(), decision.Action{Target: "web", Set: containers("sidecar", corev1.ResourceList{"cpu": q("1")}, nil)}, "container sidecar is not one of [app]"},
		{"resource without bounds", input(), decision.Action{Target: "web", Set: containers("app", corev1.ResourceList{"ephemeral-storage": q("1Gi")}, nil)}, "declares no ephemeral-storage bounds"},
		{"request above limit", input(), decision.Action{Target: "web", Set: containers("app", corev1.ResourceList{"memory": q("256Mi")}, corev1.ResourceList{"memory": q("200Mi")})}, "would request 256Mi memory above its limit 200Mi"},
		{"hpa min above max", input(), decision.Action{Target: "api", Set: decision.Set{"hpa": hpa.Bounds{MinReplicas: ip(10)}}}, "minReplicas 10 would be above maxReplicas 8"},
		{"hpa on a target without one", input(), decision.Action{Target: "web", Set: decision.Set{"hpa": hpa.Bounds{MinReplicas: ip(2)}}}, "declares no hpa bounds"},
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
	r := Check(in, decide(decision.Action{Target: "batch", Metric: "memory", Set: decision.Set{"replicas": int64(2)}}))
	require.Len(t, r.Actions, 1, notes(r))
}

// The guard says when the earliest cooldown that refused an action ends,
// so that the loop asks again then; nothing when none refused.
func TestCooldownEndsIsTheEarliestRefusal(t *testing.T) {
	in := input()
	in.LastChange = map[string]time.Time{"batch": now.Add(-10 * time.Second), "web": now.Add(-25 * time.Second), "telemetry": now.Add(-time.Hour)}
	r := Check(in, decide(replicas("batch", 2), replicas("web", 4)))
	assert.Equal(t, now.Add(5*time.Second), r.CooldownEnds, notes(r))

	r = Check(in, decide(egress("telemetry", "450M")))
	require.Len(t, r.Actions, 1, notes(r))
	assert.Zero(t, r.CooldownEnds)
}

// An action decided within Grace of its target's cooldown's end is let
// through, to be made at the end (ActAt); one earlier is refused.
func TestActionJustBeforeTheCooldownEndsWaitsForIt(t *testing.T) {
	in := input()
	in.Grace = 50 * time.Millisecond
	in.LastChange = map[string]time.Time{"batch": now.Add(-30*time.Second + 20*time.Millisecond)}
	r := Check(in, decide(replicas("batch", 2)))
	require.Len(t, r.Actions, 1, notes(r))
	assert.Equal(t, now.Add(20*time.Millisecond), r.ActAt)

	in.LastChange["batch"] = now.Add(-30*time.Second + 60*time.Millisecond)
	r = Check(in, decide(replicas("batch", 2)))
	assert.Empty(t, r.Actions)
	assert.Zero(t, r.ActAt)
	assert.Equal(t, now.Add(60*time.Millisecond), r.CooldownEnds)
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

	// Asked for where it already is, within the bounds: nothing to do either.
	r = Check(input(), decide(replicas("batch", 1)))
	assert.Empty(t, r.Actions)
	assert.Equal(t, []string{"Unchanged batch: already as asked"}, notes(r))
}

// Issue 16: with max 5 at 5 and the policy asking for 6, the guard said "already as asked".
// It clamped: the notes say so, and that the clamped value is already there.
func TestAClampToTheCurrentValueIsReportedAsAClamp(t *testing.T) {
	in := input()
	in.Spec.Safety.MaxActions = 1
	in.Targets["batch"].Current["replicas"] = ip(5)
	in.Targets["telemetry"].Current["bandwidth"] = bandwidth.Value{Egress: qp("1000M")}
	r := Check(in, decide(replicas("batch", 6), egress("telemetry", "2G"), replicas("web", 4)))
	require.Len(t, r.Actions, 1, "a clamp that changes nothing takes none of maxActions")
	assert.Equal(t, "web", r.Actions[0].Target)
	assert.Equal(t, []string{
		"Clamped batch: replicas 6 lowered to the maximum 5",
		"Unchanged batch: already as clamped",
		"Clamped telemetry: egress bandwidth 2G lowered to the maximum 1G",
		"Unchanged telemetry: already as clamped",
	}, notes(r))

	// At the maximum of a target with a step: the clamp, then nothing to do.
	in = input()
	in.Targets["web"].Current["replicas"] = ip(10)
	r = Check(in, decide(replicas("web", 12), replicas("batch", 1)))
	assert.Empty(t, r.Actions)
	assert.Equal(t, []string{
		"Clamped web: replicas 12 lowered to the maximum 10",
		"Unchanged web: already as clamped",
		"Unchanged batch: already as asked",
	}, notes(r))
}

func TestUnknownCurrentValueSkipsTheStepButNotTheBounds(t *testing.T) {
	in := input()
	in.Targets["telemetry"].Current = map[string]any{}
	r := Check(in, decide(egress("telemetry", "5G")))
	require.Len(t, r.Actions, 1)
	assert.Zero(t, egressOf(r.Actions[0]).Cmp(q("1000M")), egressOf(r.Actions[0]).String())
}

// Issue 12: bandwidth bounds {min: 100M, max: 1000M, maxStep: -50M} (which the CRD now
// refuses, but replay and loops stored before the rule do not go through it) took 500M to
// 450M when 510M was asked, and on down below 0. The guard refuses to fit into them.
func TestBrokenBoundsAreRefused(t *testing.T) {
	in := input()
	step := q("-50M")
	in.Spec.Targets[1].Bandwidth = &v1alpha1.BandwidthBounds{Min: q("100M"), Max: q("1000M"), MaxStep: &step}
	r := Check(in, decide(egress("telemetry", "510M")))
	assert.Empty(t, r.Actions)
	assert.Equal(t, []string{"Refused telemetry: egress bandwidth: maxStep -50M is not above 0"}, notes(r))
}

// A target scaled by hand outside its bounds (100 replicas, max 10, maxStep 2) comes back by
// one step per action by default, and to the nearest bound at once with outOfBounds: Snap.
func TestOutOfBounds(t *testing.T) {
	for _, tc := range []struct {
		mode v1alpha1.OutOfBounds
		want int64
		note string
	}{
		{"", 98, "Clamped web: replicas 4 limited to one step (2) below 100, toward [1, 10] (outOfBounds: Step)"},
		{v1alpha1.Step, 98, "Clamped web: replicas 4 limited to one step (2) below 100, toward [1, 10] (outOfBounds: Step)"},
		{v1alpha1.Snap, 10, "Clamped web: replicas 4: the current 100 is outside [1, 10], set to the nearest bound 10 (outOfBounds: Snap)"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			in := input()
			in.Spec.Targets[0].OutOfBounds = tc.mode
			in.Targets["web"].Current["replicas"] = ip(100)
			r := Check(in, decide(replicas("web", 4)))
			require.Len(t, r.Actions, 1, notes(r))
			assert.Equal(t, tc.want, replicasOf(r.Actions[0]))
			assert.Equal(t, []string{tc.note}, notes(r))
		})
	}
}
