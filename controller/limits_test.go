package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// spinPolicy never finishes: 10^10 steps before it decides.
const spinPolicy = `package spin

spins if {
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j < 0
}

decision := {} if not spins
`

// limitedRegistry holds the echo (revision 1) and spin bundles, within lim.
func limitedRegistry(t *testing.T, lim bundles.Limits) *bundles.Registry {
	t.Helper()
	dir := t.TempDir()
	for name, policy := range map[string]string{"echo": echoPolicy, "spin": spinPolicy} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "policy.rego"), []byte(policy), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo", ".manifest"), []byte(`{"revision": "1"}`), 0o644))
	reg := bundles.NewRegistry()
	reg.SetLimits(lim)
	require.NoError(t, reg.AddDir(context.Background(), dir))
	return reg
}

func spinLoop(t *testing.T, timeout time.Duration) *v1alpha1.ControlLoop {
	loop := echoLoop(t, `{}`)
	loop.Spec.Policy.Bundle, loop.Spec.Policy.Decision = "spin", "spin/decision"
	loop.Spec.Policy.Timeout = &metav1.Duration{Duration: timeout}
	return loop
}

// TestTickTimeout: a decision past the loop's time limit (at most the
// controller's) is stopped and fails the tick, recorded; one cut short by
// the controller stopping is dropped.
func TestTickTimeout(t *testing.T) {
	reg := limitedRegistry(t, bundles.Limits{MaxDecisionTimeout: 300 * time.Millisecond})
	for timeout, want := range map[time.Duration]string{100 * time.Millisecond: "100ms", time.Hour: "300ms"} {
		loop := spinLoop(t, timeout)
		st := &v1alpha1.ControlLoopStatus{}
		res := tick(context.Background(), freshWorld(), reg, loop, st, tickNow, false, nil)
		assert.False(t, res.interrupted)
		assert.Equal(t, v1alpha1.PhaseDegraded, res.phase)
		assert.Equal(t, "DecisionTimedOut", res.policy.Reason)
		assert.Equal(t, "evaluating spin/decision in spin@unversioned: stopped after its time limit of "+want, res.entry.Error)
		assert.Nil(t, res.probe)
		next, err := record(loop, st, res, 0)
		require.NoError(t, err)
		assert.Equal(t, res.entry.Error, next.History[0].Error)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res := tick(ctx, freshWorld(), reg, spinLoop(t, 250*time.Millisecond), &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.True(t, res.interrupted, "stopping is not the policy's failure")
	assert.Empty(t, res.entry.Error)
}

// TestTickKeepsItsDecisionForTheGate: a decision within the contract is
// kept (input, contract, time limit) for the gate; a rejected one, or one
// on a pinned revision, is not.
func TestTickKeepsItsDecisionForTheGate(t *testing.T) {
	reg := limitedRegistry(t, bundles.Limits{})
	loop := echoLoop(t, `{"events": ["hello"]}`)
	res := tick(context.Background(), freshWorld(), reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	require.NotNil(t, res.probe)
	assert.Equal(t, "factory/web-loop", res.probe.Loop)
	assert.Equal(t, "echo/decision", res.probe.Decision)
	assert.Equal(t, time.Second, res.probe.Timeout, "the default time limit")
	assert.Equal(t, map[string]bool{"web": true}, res.probe.Contract.Targets)
	assert.Equal(t, int64(1), res.probe.Input["tick"])

	res = tick(context.Background(), freshWorld(), reg, echoLoop(t, `{"events": "hello"}`), &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.Contains(t, res.entry.Error, "decision rejected")
	assert.Nil(t, res.probe)

	loop.Spec.Policy.Revision = "1"
	res = tick(context.Background(), freshWorld(), reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.Empty(t, res.entry.Error)
	assert.Nil(t, res.probe)
}

// TestTickOutputLimits: a decision over the output limits is rejected
// whole, naming the limit, and nothing acts.
func TestTickOutputLimits(t *testing.T) {
	reg := limitedRegistry(t, bundles.Limits{})
	events := make([]string, 40)
	for i := range events {
		events[i] = fmt.Sprintf("%q", fmt.Sprint(i))
	}
	w := freshWorld()
	loop := echoLoop(t, `{"events": [`+strings.Join(events, ",")+`], "actions": [{"target": "web", "set": {"replicas": 4}}]}`)
	res := tick(context.Background(), w, reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, nil)
	assert.Contains(t, res.entry.Error, "decision rejected: invalid decision echo/decision")
	assert.Contains(t, res.entry.Error, "events: 40 events, at most 32 allowed")
	assert.Empty(t, w.acted)
}

// TestRecordKeepsTheStatusUnderItsLimit: the oldest history entries go
// first, with a note; an entry too large alone loses the actions and
// events it decided, never what was applied.
func TestRecordKeepsTheStatusUnderItsLimit(t *testing.T) {
	loop := echoLoop(t, `{}`)
	loop.Spec.HistoryLimit = 200
	big := strings.Repeat("x", 1000)
	entry := func(tick int64, events int) v1alpha1.HistoryEntry {
		e := v1alpha1.HistoryEntry{Tick: tick, Time: metav1.NewMicroTime(tickNow)}
		for range events {
			e.Events = append(e.Events, big)
		}
		return e
	}
	st := &v1alpha1.ControlLoopStatus{}
	for i := range int64(100) {
		st.History = append(st.History, entry(i, 2))
	}
	res := tickResult{entry: entry(100, 2), phase: v1alpha1.PhaseRunning, policy: metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionTrue, Reason: "Prepared"}}
	next, err := record(loop, st, res, 64<<10)
	require.NoError(t, err)
	assert.LessOrEqual(t, statusSize(t, next), 64<<10)
	newest := next.History[len(next.History)-1]
	assert.Equal(t, int64(100), newest.Tick)
	assert.Len(t, newest.Events, 2)
	assert.Contains(t, newest.Guard, fmt.Sprintf("Trimmed: the %d oldest history entries dropped to keep the status under 65536 bytes", 101-len(next.History)))
	assert.Greater(t, len(next.History), 20)

	applied := v1alpha1.Action{Target: "web", Set: apiextensionsv1.JSON{Raw: []byte(`{"replicas":4}`)}}
	res.entry = entry(101, 80)
	res.entry.Applied = []v1alpha1.Action{applied}
	next, err = record(loop, next, res, 64<<10)
	require.NoError(t, err)
	assert.LessOrEqual(t, statusSize(t, next), 64<<10)
	require.Len(t, next.History, 1)
	assert.Empty(t, next.History[0].Events)
	assert.Equal(t, []v1alpha1.Action{applied}, next.History[0].Applied)
	assert.Contains(t, next.History[0].Guard, "Trimmed: this tick's decided actions and events left out of the history to keep the status under 65536 bytes")

	// Applied actions with long reasons: their reasons go, what changed stays.
	applied.Reason = strings.Repeat("r", 500)
	res.entry = entry(102, 0)
	for range 200 {
		res.entry.Applied = append(res.entry.Applied, applied)
	}
	next, err = record(loop, next, res, 64<<10)
	require.NoError(t, err)
	assert.LessOrEqual(t, statusSize(t, next), 64<<10)
	require.Len(t, next.History, 1)
	require.Len(t, next.History[0].Applied, 200)
	assert.Empty(t, next.History[0].Applied[0].Reason)
	assert.JSONEq(t, `{"replicas":4}`, string(next.History[0].Applied[199].Set.Raw))
	assert.Contains(t, next.History[0].Guard, "Trimmed: the applied actions' metrics and reasons left out of the history to keep the status under 65536 bytes")
	assert.Len(t, res.entry.Applied[0].Reason, 500, "the tick's own entry is not changed")
}

func statusSize(t *testing.T, st *v1alpha1.ControlLoopStatus) int {
	raw, err := json.Marshal(st)
	require.NoError(t, err)
	return len(raw)
}

// BenchmarkRecord is the cost of folding a tick into a status of 20
// history entries, each with one action and two events, most of it
// measuring the status against its limit.
func BenchmarkRecord(b *testing.B) {
	loop := echoLoop(&testing.T{}, `{}`)
	action := v1alpha1.Action{Target: "web", Metric: "cpu", Set: apiextensionsv1.JSON{Raw: []byte(`{"replicas":4}`)}, Reason: "cpu 91 above threshold 80"}
	entry := v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(tickNow), Revision: "echo@1", Actions: []v1alpha1.Action{action},
		Applied: []v1alpha1.Action{action}, Events: []string{"High cpu", "scaling web"}}
	st := &v1alpha1.ControlLoopStatus{}
	for range 20 {
		st.History = append(st.History, entry)
	}
	res := tickResult{entry: entry, phase: v1alpha1.PhaseRunning, policy: metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionTrue, Reason: "Prepared"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := record(loop, st, res, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStatusSizeBound: the bound that spares encoding a status is never
// under its size, even for strings JSON escapes at six bytes a byte.
func TestStatusSizeBound(t *testing.T) {
	hostile := strings.Repeat("<\x01\"", 50)
	action := v1alpha1.Action{Target: hostile, Metric: hostile, Reason: hostile, Set: apiextensionsv1.JSON{Raw: []byte(`{"k":"` + strings.Repeat("<", 100) + `"}`)}}
	st := &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning, PolicyRevision: hostile, Tick: 1 << 60,
		State:      &apiextensionsv1.JSON{Raw: []byte(`{"m":"` + strings.Repeat("<>&", 100) + `"}`)},
		Bundle:     &v1alpha1.BundleStatus{Name: hostile, Source: hostile, LastError: hostile, LastDownload: &metav1.Time{Time: tickNow}},
		Targets:    []v1alpha1.TargetStatus{{Name: hostile, LastChange: &metav1.MicroTime{Time: tickNow}}},
		Conditions: []metav1.Condition{{Type: hostile, Status: metav1.ConditionFalse, Reason: hostile, Message: hostile, LastTransitionTime: metav1.Time{Time: tickNow}, ObservedGeneration: 1 << 60}},
	}
	for i := range 5 {
		st.History = append(st.History, v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(tickNow), Tick: int64(i) << 60, Revision: hostile, Error: hostile,
			Actions: []v1alpha1.Action{action, action}, Applied: []v1alpha1.Action{action}, Events: []string{hostile, ""}, Guard: []string{hostile},
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"p":"<"}`)}})
	}
	for _, s := range []*v1alpha1.ControlLoopStatus{st, {}, {History: []v1alpha1.HistoryEntry{{}}}} {
		assert.GreaterOrEqual(t, sizeBound(s), ownSize(s))
	}
}

// TestRefusalNote: a revision refused at the gate is noted once in the
// history, when the loop first sees it; download errors are not refusals.
func TestRefusalNote(t *testing.T) {
	refused := &bundles.GateError{Bundle: "b", Revision: "2", Step: bundles.StepCompile, Err: fmt.Errorf("t.rego:3: builtin_refused: http.send ...")}
	now := &bundles.Status{Name: "b", LastError: refused}
	assert.Equal(t, "Bundle: bundle b@2 refused at compile: t.rego:3: builtin_refused: http.send ...", refusalNote(now, nil))
	assert.Equal(t, "Bundle: "+refused.Error(), refusalNote(now, &v1alpha1.BundleStatus{LastError: "bundle b@1 refused at test: ..."}))
	assert.Empty(t, refusalNote(now, &v1alpha1.BundleStatus{LastError: refused.Error()}), "already recorded")
	assert.Empty(t, refusalNote(&bundles.Status{LastError: &bundles.DownloadError{Bundle: "b", Err: fmt.Errorf("connection refused")}}, nil))
	assert.Empty(t, refusalNote(&bundles.Status{}, nil))
}

// TestRecordTruncatesTheError: a tick's error (a rejected decision lists
// every problem) is recorded at most 4 KiB long.
func TestRecordTruncatesTheError(t *testing.T) {
	res := tickResult{entry: v1alpha1.HistoryEntry{Tick: 1, Error: strings.Repeat("e", 10000)}, phase: v1alpha1.PhaseDegraded,
		policy: metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionFalse, Reason: "EvaluationFailed"}}
	next, err := record(echoLoop(t, `{}`), &v1alpha1.ControlLoopStatus{}, res, 0)
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("e", maxMessage)+" …(truncated)", next.History[0].Error)
}
