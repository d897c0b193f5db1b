package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// slowPolicy decides after counting to ten million: long enough that a
// tick is still evaluating when the controller stops.
const slowPolicy = `package slow

decision := {"events": [sprintf("%d", [count([x | some x in numbers.range(1, 10000000)])])]}
`

// A tick cut by shutdown (or lost leadership, or the loop's removal) while
// its policy evaluates is dropped: the status, history, phase, conditions
// and events stay as they were, during the tick and when the runner stops.
func TestTickCutByShutdownIsDropped(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "slow"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "slow", "policy.rego"), []byte(slowPolicy), 0o644))
	reg, err := bundles.LoadRegistry(context.Background(), dir)
	require.NoError(t, err)

	scheme := runtime.NewScheme()
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	loop := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: "slow"},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: metav1.Duration{Duration: time.Second},
			Policy: v1alpha1.PolicySpec{Bundle: "slow", Decision: "slow/decision"},
		},
		Status: v1alpha1.ControlLoopStatus{Tick: 7, Phase: v1alpha1.PhaseRunning},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(loop).WithStatusSubresource(loop).Build()
	rec := events.NewFakeRecorder(10)
	l := &Loops{Client: c, APIReader: c, Bundles: reg, Recorder: rec, Log: logr.Discard()}
	r := l.newRunner(types.NamespacedName{Namespace: "factory", Name: "slow"})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, ok := l.once(ctx, r, tickStart{at: time.Now()})
	require.Error(t, ctx.Err(), "the policy decided before the cancel: make it slower")
	assert.False(t, ok, "a runner whose context ended stops")
	l.flush(r)

	var got v1alpha1.ControlLoop
	require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(loop), &got))
	assert.Equal(t, int64(7), got.Status.Tick)
	assert.Empty(t, got.Status.History)
	assert.Equal(t, v1alpha1.PhaseRunning, got.Status.Phase)
	assert.Empty(t, got.Status.Conditions)
	assert.Empty(t, rec.Events, "no event for a tick that did not happen")
}

// Wakes (a push, a spec change) make a loop tick before its interval, but
// never sooner than minInterval after its last tick: a flood of them
// coalesces.
func TestWakesTickNoMoreOftenThanMinInterval(t *testing.T) {
	scheme := runtime.NewScheme()
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	loop := echoLoop(t, `{}`)
	loop.Spec.Interval = metav1.Duration{Duration: time.Hour}
	loop.Spec.MinInterval = &metav1.Duration{Duration: 100 * time.Millisecond}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(loop).WithStatusSubresource(loop).Build()
	l := &Loops{Client: c, APIReader: c, Bundles: echoRegistry(t), Log: logr.Discard()}
	key := client.ObjectKeyFromObject(loop)
	ticks := func() int64 {
		var got v1alpha1.ControlLoop
		require.NoError(t, c.Get(context.Background(), key, &got))
		return got.Status.Tick
	}

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = l.Start(ctx); close(stopped) }()
	l.Ensure(key)
	require.Eventually(t, func() bool { return ticks() == 1 }, 10*time.Second, 10*time.Millisecond, "the first tick")

	start := time.Now()
	for ticks() < 3 { // wake it every 5 ms until it has ticked twice more
		l.Ensure(key)
		time.Sleep(5 * time.Millisecond)
		require.Less(t, time.Since(start), 20*time.Second, "woken loops must tick")
	}
	window := time.Since(start)
	cancel()
	<-stopped
	woken := ticks() - 1
	// The wakes came every 5 ms; ticks, at most one per minInterval.
	assert.LessOrEqual(t, woken, int64(window/(100*time.Millisecond))+1, "%d woken ticks in %s", woken, window)
}

// A tick reads the loop from the cache without its copy: what it may
// change is its own, the history and the last input (the runner keeps its
// own) and the managed fields are left out.
func TestTickingLoopSharesNothingWithTheCache(t *testing.T) {
	cached := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Name: "web-loop", Labels: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: v1alpha1.ControlLoopSpec{Targets: []v1alpha1.TargetSpec{{Name: "web"}}},
		Status: v1alpha1.ControlLoopStatus{Sequence: 4, History: []v1alpha1.HistoryEntry{{Tick: 1}},
			Observations: map[string]v1alpha1.Observation{"cpu": {}}, LastInput: &apiextensionsv1.JSON{Raw: []byte(`{"tick": 1}`)}},
	}
	before := cached.DeepCopy()
	loop := ticking(cached)
	assert.Nil(t, loop.Status.History)
	assert.Nil(t, loop.Status.LastInput)
	assert.Nil(t, loop.ManagedFields)
	assert.Equal(t, int64(4), loop.Status.Sequence)
	delete(loop.Status.Observations, "cpu")
	loop.Labels["a"] = "changed"
	loop.Spec.Targets[0].Name = "changed"
	assert.Equal(t, before, cached, "the cache's object changed")
}
