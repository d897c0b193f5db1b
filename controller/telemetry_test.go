package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
)

// loopSeries gathers the per-loop families and returns the series of one
// loop: "name{label=value,...}" (namespace and loop left out) to value; a
// histogram gives its sample count.
func loopSeries(t *testing.T, namespace, loop string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range loopMetrics() {
		require.NoError(t, reg.Register(c))
	}
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			mine := 0
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "namespace" && l.GetValue() == namespace, l.GetName() == "loop" && l.GetValue() == loop:
					mine++
				case l.GetName() != "namespace" && l.GetName() != "loop":
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			if mine != 2 {
				continue
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[fmt.Sprintf("%s{%s}", f.GetName(), strings.Join(labels, ","))] = v
		}
	}
	return out
}

func TestLoopTelemetry(t *testing.T) {
	loop := echoLoop(t, `{}`)
	loop.Namespace, loop.Name = "telemetry", "web-loop"
	loop.Spec.Collectors = append(loop.Spec.Collectors, v1alpha1.CollectorSpec{Name: "jitter", Prometheus: &v1alpha1.PrometheusCollector{Query: "x"}})
	loop.Spec.Targets = append(loop.Spec.Targets, v1alpha1.TargetSpec{Name: "db", Ref: v1alpha1.TargetRef{Name: "db"}})
	tel := newLoopTelemetry(loop.Namespace, loop.Name)
	now := time.Now()
	cpu := 91.0

	t.Run("metrics", func(t *testing.T) {
		tel.observed(loop, map[string]collectors.Metric{
			"cpu":    {Value: &cpu, ObservedAt: now.Add(-20 * time.Second)}, // staleAfter is 15s
			"jitter": {Err: "query timed out"},
		}, now)
		got := loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 91.0, got["governor_loop_metric_value{metric=cpu}"])
		assert.Equal(t, 20.0, got["governor_loop_metric_age_seconds{metric=cpu}"])
		assert.Equal(t, 1.0, got["governor_loop_metric_stale{metric=cpu}"])
		assert.Equal(t, 1.0, got["governor_loop_metric_stale{metric=jitter}"], "no value: stale")
		assert.NotContains(t, got, "governor_loop_metric_value{metric=jitter}", "no value, no series")
		assert.Equal(t, 1.0, got["governor_collector_errors_total{kind=prometheus}"])

		tel.observed(loop, map[string]collectors.Metric{"cpu": {Value: &cpu, ObservedAt: now}}, now)
		got = loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 0.0, got["governor_loop_metric_stale{metric=cpu}"])
		assert.NotContains(t, got, "governor_loop_metric_stale{metric=jitter}", "a metric gone loses its series")
	})

	t.Run("targets", func(t *testing.T) {
		tel.read("web", map[string]any{"kind": "Deployment", "name": "web", "exists": true, "replicas": int64(3),
			"bandwidth": map[string]any{"egress": "400M"}, "hpa": map[string]any{"name": "web", "minReplicas": int32(2)},
			"resources": map[string]any{"app": map[string]any{"requests": map[string]any{"cpu": "250m"}}}})
		got := loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 3.0, got["governor_target_value{field=replicas,target=web}"])
		assert.Equal(t, 4e8, got["governor_target_value{field=bandwidth.egress,target=web}"])
		assert.Equal(t, 2.0, got["governor_target_value{field=hpa.minReplicas,target=web}"])
		assert.Equal(t, 0.25, got["governor_target_value{field=resources.app.requests.cpu,target=web}"])
		assert.Len(t, slices.DeleteFunc(slices.Collect(maps.Keys(got)), func(k string) bool { return !strings.HasPrefix(k, "governor_target_value") }), 4,
			"names and kinds are no values")

		tel.read("web", map[string]any{"replicas": int64(4), "bandwidth": map[string]any{"egress": "400M"}})
		got = loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 4.0, got["governor_target_value{field=replicas,target=web}"])
		assert.NotContains(t, got, "governor_target_value{field=hpa.minReplicas,target=web}", "a field gone loses its series")
	})

	t.Run("tick", func(t *testing.T) {
		st := &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning, Targets: []v1alpha1.TargetStatus{
			{Name: "web", LastChange: ptrMicro(now)}}}
		res := tickResult{
			entry: v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(now.Add(-10 * time.Millisecond)), Revision: "echo@1",
				Applied: []v1alpha1.Action{{Target: "web", Set: apiextensionsv1.JSON{Raw: []byte(`{"replicas": 5}`)}}}},
			notes: []guard.Note{
				{Target: "web", Verdict: guard.Clamped, Message: "replicas 9 clamped"},
				{Target: "web", Verdict: guard.Clamped, Message: "step"},
				{Target: "db", Verdict: guard.Refused, Reason: guard.Cooldown},
				{Target: "db", Verdict: guard.Refused, Reason: guard.Cooldown},
				{Target: "api", Verdict: guard.Failed},
			},
			decideTime: 2 * time.Millisecond,
			phase:      v1alpha1.PhaseRunning,
		}
		tel.ticked(loop, res, st)
		got := loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 1.0, got["governor_loop_ticks_total{outcome=acted}"])
		assert.Equal(t, 0.0, got["governor_loop_ticks_total{outcome=failed}"])
		assert.Equal(t, 1.0, got["governor_loop_tick_duration_seconds{}"])
		assert.Equal(t, 1.0, got["governor_decision_duration_seconds{bundle=echo,revision=echo@1}"])
		assert.Equal(t, 1.0, got["governor_actions_total{reason=,result=applied,target=web}"])
		assert.Equal(t, 1.0, got["governor_actions_total{reason=,result=clamped,target=web}"], "one action's clamps count once")
		assert.Equal(t, 2.0, got["governor_actions_total{reason=Cooldown,result=refused,target=db}"])
		assert.Equal(t, 1.0, got["governor_actions_total{reason=,result=failed,target=api}"])
		assert.Equal(t, 5.0, got["governor_target_value{field=replicas,target=web}"], "what the tick applied, before the next read")
		assert.InDelta(t, float64(now.UnixMicro())/1e6, got["governor_loop_last_change_timestamp_seconds{target=web}"], 1e-3)
		assert.Equal(t, 1.0, got["governor_loop_phase{phase=Running}"])
		assert.Equal(t, 0.0, got["governor_loop_phase{phase=Pending}"])

		res.entry.Revision, res.entry.Applied, res.notes, res.entry.Error = "echo@2", nil, nil, "decision rejected: no"
		st.Phase = v1alpha1.PhaseDegraded
		tel.ticked(loop, res, st)
		got = loopSeries(t, loop.Namespace, loop.Name)
		assert.Equal(t, 1.0, got["governor_loop_ticks_total{outcome=failed}"])
		assert.Equal(t, 1.0, got["governor_decision_duration_seconds{bundle=echo,revision=echo@2}"])
		assert.NotContains(t, got, "governor_decision_duration_seconds{bundle=echo,revision=echo@1}", "one revision per loop")
		assert.Equal(t, 1.0, got["governor_loop_phase{phase=Degraded}"])
		assert.Equal(t, 0.0, got["governor_loop_phase{phase=Running}"])

		count, sum := ticksLateSoFar(t)
		tel.lagged(-time.Second)
		assert.Equal(t, 0.0, loopSeries(t, loop.Namespace, loop.Name)["governor_loop_tick_lag_seconds{}"], "a tick woken early is not late")
		tel.lagged(1500 * time.Millisecond)
		assert.Equal(t, 1.5, loopSeries(t, loop.Namespace, loop.Name)["governor_loop_tick_lag_seconds{}"])
		count2, sum2 := ticksLateSoFar(t)
		assert.Equal(t, uint64(2), count2-count, "the replica's histogram counts every tick")
		assert.InDelta(t, 1.5, sum2-sum, 1e-9, "a tick woken early counts as 0")
	})

	t.Run("a target removed from the spec", func(t *testing.T) {
		next := loop.DeepCopy()
		next.Generation++
		next.Spec.Targets = next.Spec.Targets[1:] // db only
		tel.ticked(next, tickResult{}, &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning})
		for k := range loopSeries(t, loop.Namespace, loop.Name) {
			assert.NotContains(t, k, "target=web")
		}
	})

	t.Run("forgotten", func(t *testing.T) {
		tel.forget()
		tel.observed(loop, map[string]collectors.Metric{"cpu": {Value: &cpu, ObservedAt: now}}, now)
		tel.ticked(loop, tickResult{entry: v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(now)}}, &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning})
		count, _ := ticksLateSoFar(t)
		tel.lagged(time.Second)
		assert.Empty(t, loopSeries(t, loop.Namespace, loop.Name), "a runner finishing a tick brings no series back")
		count2, _ := ticksLateSoFar(t)
		assert.Equal(t, count, count2, "nor counts its tick")
	})
}

// A loop's runner shows its loop's series while it runs, and none once the
// loop is removed.
func TestRemovedLoopLosesItsSeries(t *testing.T) {
	loop := quietLoop(t, "series-loop", "uid", 50*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	e := startLoops(t, nil, loop)
	require.Eventually(t, func() bool {
		return loopSeries(t, key.Namespace, key.Name)["governor_loop_ticks_total{outcome=held}"] >= 2
	}, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1.0, loopSeries(t, key.Namespace, key.Name)["governor_loop_phase{phase=Running}"])
	e.l.Remove(key)
	assert.Empty(t, loopSeries(t, key.Namespace, key.Name))
}

func ptrMicro(t time.Time) *metav1.MicroTime {
	m := metav1.NewMicroTime(t)
	return &m
}

// BenchmarkLoopTelemetry is what a quiet tick of a loop with two metrics and
// one target costs the metrics: its observations, its target read, its
// record.
func BenchmarkLoopTelemetry(b *testing.B) {
	loop := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "web-loop", Generation: 1},
		Spec: v1alpha1.ControlLoopSpec{Targets: []v1alpha1.TargetSpec{{Name: "web"}},
			Safety: v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: 15 * time.Second}}}}
	tel := newLoopTelemetry(loop.Namespace, loop.Name)
	defer tel.forget()
	cpu, jitter := 91.0, 2.5
	now := time.Now()
	metrics := map[string]collectors.Metric{"cpu": {Value: &cpu, ObservedAt: now}, "jitter": {Value: &jitter, ObservedAt: now}}
	doc := map[string]any{"kind": "Deployment", "name": "web", "exists": true, "replicas": int64(3), "bandwidth": map[string]any{"egress": "400M"}}
	st := &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning, Targets: []v1alpha1.TargetStatus{{Name: "web", LastChange: ptrMicro(now)}}}
	res := tickResult{entry: v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(now), Revision: "echo@1"}, decideTime: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		tel.observed(loop, metrics, now)
		tel.read("web", doc)
		tel.ticked(loop, res, st)
	}
}

// BenchmarkForgetAmongManyLoops is what stopping one runner costs the
// metrics while 10,000 loops have series, as a replica holds when it stops
// or hands a share on: a forget walked every series of each family before,
// and a replica stopping 3,300 runners took minutes (BenchmarkShards).
func BenchmarkForgetAmongManyLoops(b *testing.B) {
	const loops = 10000
	loop := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "bench-forget", Generation: 1},
		Spec: v1alpha1.ControlLoopSpec{Targets: []v1alpha1.TargetSpec{{Name: "web"}},
			Safety: v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: 15 * time.Second}}}}
	cpu, now := 91.0, time.Now()
	metrics := map[string]collectors.Metric{"cpu": {Value: &cpu, ObservedAt: now}}
	doc := map[string]any{"replicas": int64(3), "bandwidth": map[string]any{"egress": "400M"}}
	st := &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning, Targets: []v1alpha1.TargetStatus{{Name: "web", LastChange: ptrMicro(now)}}}
	res := tickResult{entry: v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(now), Revision: "echo@1"}, decideTime: time.Millisecond}
	record := func(name string) *loopTelemetry {
		tel := newLoopTelemetry(loop.Namespace, name)
		tel.observed(loop, metrics, now)
		tel.read("web", doc)
		tel.ticked(loop, res, st)
		return tel
	}
	all := make([]*loopTelemetry, loops)
	for i := range all {
		all[i] = record(fmt.Sprintf("loop-%d", i))
	}
	b.Cleanup(func() {
		for _, tel := range all {
			tel.forget()
		}
	})
	i := 0
	for b.Loop() {
		all[i%loops].forget()
		all[i%loops] = record(all[i%loops].name) // as many series again
		i++
	}
}

// ticksLateSoFar is governor_tick_lag_seconds's count and sum.
func ticksLateSoFar(t *testing.T) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	require.NoError(t, ticksLate.Write(&m))
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}
