package controller

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
)

func TestEffectiveParamsOverridesWinDeeply(t *testing.T) {
	loop := &v1alpha1.ControlLoop{
		Spec: v1alpha1.ControlLoopSpec{Policy: v1alpha1.PolicySpec{Params: &apiextensionsv1.JSON{Raw: []byte(
			`{"priorities": ["cpu", "memory"], "monitor": {"cpu": {"threshold": 80, "kind": "superior"}}, "window": 10}`)}}},
		Status: v1alpha1.ControlLoopStatus{Overrides: &apiextensionsv1.JSON{Raw: []byte(
			`{"priorities": ["memory", "cpu"], "monitor": {"cpu": {"threshold": 90}}}`)}},
	}
	p, err := effectiveParams(loop)
	require.NoError(t, err)
	got, err := json.Marshal(p)
	require.NoError(t, err)
	assert.JSONEq(t, `{"priorities": ["memory", "cpu"], "monitor": {"cpu": {"threshold": 90, "kind": "superior"}}, "window": 10}`, string(got))

	loop.Status.Overrides = &apiextensionsv1.JSON{Raw: []byte(`[1]`)}
	_, err = effectiveParams(loop)
	assert.ErrorContains(t, err, "status.overrides must be an object")
}

func TestMetricDocStalenessAndNew(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v := 2.5
	doc, stale := metricDoc(collectors.Metric{Value: &v, ObservedAt: now.Add(-2 * time.Second), Fields: map[string]any{"p95": 3.1}}, now, 15*time.Second, false)
	assert.False(t, stale)
	assert.Equal(t, map[string]any{"value": 2.5, "age_seconds": 2.0, "observed_ns": now.Add(-2 * time.Second).UnixNano(), "stale": false, "new": false, "p95": 3.1}, doc)
	doc, _ = metricDoc(collectors.Metric{Value: &v, ObservedAt: now.Add(-100 * time.Millisecond)}, now, 15*time.Second, true)
	assert.Equal(t, true, doc["new"])

	_, stale = metricDoc(collectors.Metric{Value: &v, ObservedAt: now.Add(-16 * time.Second)}, now, 15*time.Second, true)
	assert.True(t, stale, "older than staleAfter")

	doc, stale = metricDoc(collectors.Metric{Err: "no observation reported"}, now, 15*time.Second, true)
	assert.True(t, stale, "no value")
	assert.Equal(t, map[string]any{"value": nil, "stale": true, "new": false, "error": "no observation reported"}, doc)
}

// An observation is new until a decision has read it, whatever its time
// says against the ticks': one report, one pass.
func TestNewObservation(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v := 2.5
	at := func(d time.Duration) collectors.Metric { return collectors.Metric{Value: &v, ObservedAt: now.Add(d)} }
	previous := &v1alpha1.ControlLoopStatus{LastTick: ptr.To(metav1.NewMicroTime(now.Add(-500 * time.Millisecond)))}

	// A status from before status.seen: observed since the previous tick.
	assert.False(t, newObservation(previous, "cpu", at(-2*time.Second)), "observed before the previous tick")
	assert.True(t, newObservation(previous, "cpu", at(-100*time.Millisecond)), "observed since the previous tick")
	assert.True(t, newObservation(&v1alpha1.ControlLoopStatus{}, "cpu", at(-time.Hour)), "the first tick sees everything for the first time")

	// With status.seen: another observation time is new, before or after.
	seen := previous.DeepCopy()
	seen.Seen = map[string]metav1.MicroTime{"cpu": metav1.NewMicroTime(now.Add(30 * time.Second))}
	assert.False(t, newObservation(seen, "cpu", at(30*time.Second)), "a report dated ahead of the clock, read already")
	assert.False(t, newObservation(seen, "cpu", at(30*time.Second+400*time.Nanosecond)), "the same microsecond (as the status keeps it)")
	assert.True(t, newObservation(seen, "cpu", at(-2*time.Second)), "a report dated before the previous tick, not read yet")
	assert.True(t, newObservation(seen, "cpu", at(31*time.Second)), "a later report")
	assert.True(t, newObservation(seen, "memory", at(-time.Hour)), "a metric the last decision did not read")
}

// The input's numbers say what its strings say: input.time_ns is input.time, each history
// entry's time_ns its time, a target's egress_bps its egress, so that a policy may read
// either.
func TestInputNumbersAgreeWithStrings(t *testing.T) {
	w := freshWorld()
	loop := echoLoop(t, `{}`)
	now := tickNow.Add(1234567890) // not a whole millisecond: the input shows milliseconds
	status := &v1alpha1.ControlLoopStatus{History: []v1alpha1.HistoryEntry{
		{Time: metav1.NewMicroTime(now.Add(-1500 * time.Microsecond)), Tick: 7, Events: []string{"No Event"}},
	}}
	in, _, err := buildInput(context.Background(), w, loop, status, now, 8, true, nil)
	require.NoError(t, err)

	sameInstant := func(s any, ns any, what string) {
		parsed, err := time.Parse(time.RFC3339Nano, s.(string))
		require.NoError(t, err, what)
		assert.Equal(t, parsed.UnixNano(), ns, what)
	}
	assert.Equal(t, "2026-12-02T10:00:01.234Z", in["time"])
	sameInstant(in["time"], in["time_ns"], "input.time_ns")
	entry := in["history"].([]any)[0].(map[string]any)
	sameInstant(entry["time"], entry["time_ns"], "history[0].time_ns")
	cpu := in["metrics"].(map[string]any)["cpu"].(map[string]any)
	assert.Equal(t, tickNow.Add(-time.Second).UnixNano(), cpu["observed_ns"])
	web := in["targets"].(map[string]any)["web"].(map[string]any)
	assert.Equal(t, map[string]any{"egress": "500M", "egress_bps": int64(500000000)}, web["bandwidth"])
}

func TestRecordBoundsHistoryAndKeepsCooldowns(t *testing.T) {
	loop := &v1alpha1.ControlLoop{Spec: v1alpha1.ControlLoopSpec{HistoryLimit: 3, Targets: []v1alpha1.TargetSpec{{Name: "web"}}}}
	loop.Generation = 4
	st := &v1alpha1.ControlLoopStatus{Targets: []v1alpha1.TargetStatus{{Name: "gone"}}}
	start := time.Unix(1000, 0)
	for i := range 5 {
		at := start.Add(time.Duration(i) * time.Second)
		res := tickResult{entry: v1alpha1.HistoryEntry{Tick: st.Tick + 1, Time: metav1.NewMicroTime(at)}, phase: v1alpha1.PhaseRunning,
			changed: map[string]time.Time{}, policy: metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionTrue, Reason: "Prepared"}}
		if i == 1 {
			res.changed["web"] = at
		}
		var err error
		st, err = record(loop, st, res, 0)
		require.NoError(t, err)
	}
	assert.Equal(t, int64(5), st.Tick)
	require.Len(t, st.History, 3)
	assert.Equal(t, []int64{3, 4, 5}, []int64{st.History[0].Tick, st.History[1].Tick, st.History[2].Tick})
	require.Len(t, st.Targets, 1, "targets no longer declared are forgotten")
	assert.Equal(t, start.Add(time.Second), st.Targets[0].LastChange.Time)
	assert.Equal(t, int64(4), st.ObservedGeneration)
	assert.Len(t, st.Conditions, 2)
}

// status.seen holds what the last decision read: a tick that made no
// decision (no revision, a failed policy) leaves it as it was.
func TestRecordKeepsWhatTheLastDecisionRead(t *testing.T) {
	loop := &v1alpha1.ControlLoop{Spec: v1alpha1.ControlLoopSpec{HistoryLimit: 3}}
	read := map[string]metav1.MicroTime{"cpu": metav1.NewMicroTime(tickNow)}
	st, err := record(loop, &v1alpha1.ControlLoopStatus{}, tickResult{entry: v1alpha1.HistoryEntry{Tick: 1}, seen: read}, 0)
	require.NoError(t, err)
	assert.Equal(t, read, st.Seen)
	st, err = record(loop, st, tickResult{entry: v1alpha1.HistoryEntry{Tick: 2}}, 0)
	require.NoError(t, err)
	assert.Equal(t, read, st.Seen, "a tick without a decision")
}

// input.history is built only for those who read it: a decision whose rules
// name it, the decision log (it records the whole input), and governor
// replay (whole); a decision that never reads it decides without it.
func TestInputHistoryOnlyWhenRead(t *testing.T) {
	ctx := context.Background()
	status := &v1alpha1.ControlLoopStatus{Tick: 7, History: []v1alpha1.HistoryEntry{
		{Time: metav1.NewMicroTime(tickNow.Add(-time.Second)), Tick: 7, Events: []string{"No Event"}},
	}}
	hasHistory := func(reg *bundles.Registry, loop *v1alpha1.ControlLoop, whole bool) bool {
		res := tick(ctx, freshWorld(), reg, loop, status, tickNow, whole, nil)
		require.Empty(t, res.entry.Error)
		_, ok := res.input["history"]
		return ok
	}
	echo := echoLoop(t, `{"actions": []}`)
	assert.False(t, hasHistory(echoRegistry(t), echo, false), "echo reads input.params alone")
	assert.True(t, hasHistory(echoRegistry(t), echo, true), "replay keeps the whole input")

	logged := echoRegistry(t)
	cfg, err := bundles.ParseConfig([]byte("decision_logs: {console: true}\n"), bundles.Limits{})
	require.NoError(t, err)
	defer cfg.Close()
	require.NoError(t, logged.AddSources(cfg))
	logging, stop := context.WithCancel(ctx)
	started := make(chan error, 1)
	go func() { started <- logged.Start(logging) }()
	assert.True(t, hasHistory(logged, echo, false), "the decision log records the whole input")
	stop()
	require.NoError(t, <-started)

	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "echo"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo", "policy.rego"), []byte(`package echo

decision := {"actions": [], "events": [sprintf("%d ticks", [count(input.history)])]}
`), 0o644))
	counting, err := bundles.LoadRegistry(ctx, dir)
	require.NoError(t, err)
	res := tick(ctx, freshWorld(), counting, echo, status, tickNow, false, nil)
	assert.Equal(t, []string{"1 ticks"}, res.entry.Events, "a decision that reads input.history gets it")
}

// record shares what it does not change with the status it starts from:
// that status (handed to the status writer, or kept by the runner) is never
// changed, through any field, by the ticks folded after it, nor by the last
// decision's input set on the new status and its trimming.
func TestRecordLeavesTheOldStatusAlone(t *testing.T) {
	loop := &v1alpha1.ControlLoop{Spec: v1alpha1.ControlLoopSpec{HistoryLimit: 3, Targets: []v1alpha1.TargetSpec{{Name: "web"}, {Name: "db"}}}}
	old := &v1alpha1.ControlLoopStatus{
		Tick:    2,
		History: make([]v1alpha1.HistoryEntry, 0, 8), // room to append in place
		Targets: []v1alpha1.TargetStatus{{Name: "web", LastChange: ptr.To(metav1.NewMicroTime(tickNow.Add(-time.Minute)))}, {Name: "gone"}},
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Running"},
			{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionTrue, Reason: "Prepared"}},
		State: &apiextensionsv1.JSON{Raw: []byte(`{"n":1}`)},
	}
	old.History = append(old.History, v1alpha1.HistoryEntry{Tick: 1, Guard: make([]string, 1, 4)}, v1alpha1.HistoryEntry{Tick: 2, Events: []string{"x"}})
	before := old.DeepCopy()
	res := tickResult{entry: v1alpha1.HistoryEntry{Tick: 3, Time: metav1.NewMicroTime(tickNow), Error: "failed"},
		phase: v1alpha1.PhaseDegraded, changed: map[string]time.Time{"web": tickNow, "db": tickNow},
		policy: metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionFalse, Reason: "EvalError"}}
	next, err := record(loop, old, res, 0)
	require.NoError(t, err)
	again, err := record(loop, old, tickResult{entry: v1alpha1.HistoryEntry{Tick: 3, Events: []string{"other"}}}, 0)
	require.NoError(t, err)
	withLastInput(next, map[string]any{"metrics": strings.Repeat("m", 600)}, 2600) // trims the history
	assert.Equal(t, before, old, "the old status changed")
	assert.Equal(t, "failed", next.History[len(next.History)-1].Error, "each status has its own newest entry")
	assert.Empty(t, next.History[len(next.History)-1].Events, "each status has its own newest entry")
	assert.Equal(t, []string{"other"}, again.History[len(again.History)-1].Events)
	assert.Equal(t, tickNow, lastChanges(next)["web"])
}
