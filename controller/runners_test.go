package controller

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// panicky is a metric source with a bug that shows for one loop only.
type panicky struct{ loop string }

func (p panicky) Metrics(_ context.Context, loop *v1alpha1.ControlLoop, _ time.Time) map[string]collectors.Metric {
	if loop.Name == p.loop {
		panic("collector bug")
	}
	return nil
}

// quietLoop is a Running echo loop with no targets that decides nothing.
func quietLoop(t *testing.T, name string, uid types.UID, interval time.Duration) *v1alpha1.ControlLoop {
	t.Helper()
	l := echoLoop(t, `{}`)
	l.Name, l.UID = name, uid
	l.Spec.Targets, l.Spec.Collectors = nil, nil
	l.Spec.Interval = metav1.Duration{Duration: interval}
	return l
}

type loopsEnv struct {
	c    client.Client
	l    *Loops
	stop func()
}

// startLoops starts Loops with metrics as its metric source; see
// startLoopsWith.
func startLoops(t *testing.T, metrics MetricSource, loops ...*v1alpha1.ControlLoop) *loopsEnv {
	t.Helper()
	return startLoopsWith(t, func(l *Loops) { l.Metrics = metrics }, loops...)
}

// startLoopsWith starts Loops on a fake client holding loops, with the echo
// bundles, as configure leaves it, and ensures a runner for each loop. They
// stop when the test ends.
func startLoopsWith(t *testing.T, configure func(*Loops), loops ...*v1alpha1.ControlLoop) *loopsEnv {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	objs := make([]client.Object, len(loops))
	for i, l := range loops {
		objs[i] = l
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()
	l := &Loops{Client: c, APIReader: c, Bundles: echoRegistry(t), Log: logr.Discard()}
	configure(l)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = l.Start(ctx); close(stopped) }()
	e := &loopsEnv{c: c, l: l, stop: func() { cancel(); <-stopped }}
	t.Cleanup(e.stop)
	for _, loop := range loops {
		l.Ensure(client.ObjectKeyFromObject(loop))
	}
	return e
}

func (e *loopsEnv) status(t *testing.T, key types.NamespacedName) v1alpha1.ControlLoopStatus {
	t.Helper()
	var got v1alpha1.ControlLoop
	require.NoError(t, e.c.Get(context.Background(), key, &got))
	return got.Status
}

func (e *loopsEnv) registered(key types.NamespacedName) bool {
	e.l.mu.Lock()
	defer e.l.mu.Unlock()
	_, ok := e.l.runners[key]
	return ok
}

// A panic in one loop's tick fails that tick alone: the loop goes Degraded
// with the panic's message, the panic is counted, and the other loops tick
// on.
func TestPanicFailsOnlyItsLoop(t *testing.T) {
	bad := quietLoop(t, "bad", "bad-uid", 50*time.Millisecond)
	good := quietLoop(t, "good", "good-uid", 50*time.Millisecond)
	before := panics(t, "bad")
	e := startLoops(t, panicky{loop: "bad"}, bad, good)

	require.Eventually(t, func() bool { return e.status(t, client.ObjectKeyFromObject(good)).Tick >= 3 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return e.status(t, client.ObjectKeyFromObject(bad)).Tick >= 2 }, 10*time.Second, 10*time.Millisecond,
		"a loop that panicked ticks again")
	st := e.status(t, client.ObjectKeyFromObject(bad))
	assert.Equal(t, v1alpha1.PhaseDegraded, st.Phase)
	assert.Equal(t, "panic: collector bug", st.History[len(st.History)-1].Error)
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	require.NotNil(t, ready)
	assert.Equal(t, metav1.ConditionFalse, ready.Status)
	assert.Equal(t, "panic: collector bug", ready.Message)
	assert.GreaterOrEqual(t, panics(t, "bad")-before, 2.0)

	gst := e.status(t, client.ObjectKeyFromObject(good))
	assert.Equal(t, v1alpha1.PhaseRunning, gst.Phase)
	for _, h := range gst.History {
		assert.Empty(t, h.Error)
	}
}

// A loop deleted and created again before the controller saw the delete
// ticks again, from a status of its own: the runner that found its loop
// gone leaves, and one that finds a new loop under its name starts over.
func TestDeletedAndRecreatedLoopTicksAgain(t *testing.T) {
	ctx := context.Background()
	loop := quietLoop(t, "web-loop", "first", time.Hour) // only wakes make it tick
	key := client.ObjectKeyFromObject(loop)
	e := startLoops(t, nil, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick == 1 }, 10*time.Second, 10*time.Millisecond)

	t.Run("runner left", func(t *testing.T) {
		require.NoError(t, e.c.Delete(ctx, loop.DeepCopy()))
		e.l.Ensure(key) // a wake (a push) before the delete is reconciled
		require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond,
			"the runner of a loop that is gone leaves")
		again := quietLoop(t, "web-loop", "second", time.Hour)
		require.NoError(t, e.c.Create(ctx, again))
		e.l.Ensure(key)
		require.Eventually(t, func() bool { return e.status(t, key).Tick == 1 }, 10*time.Second, 10*time.Millisecond,
			"the loop created again ticks")
	})

	t.Run("runner went on", func(t *testing.T) {
		e.l.Ensure(key)
		require.Eventually(t, func() bool { return e.status(t, key).Tick == 2 }, 10*time.Second, 10*time.Millisecond)
		var cur v1alpha1.ControlLoop
		require.NoError(t, e.c.Get(ctx, key, &cur))
		require.NoError(t, e.c.Delete(ctx, &cur))
		third := quietLoop(t, "web-loop", "third", time.Hour)
		require.NoError(t, e.c.Create(ctx, third))
		e.l.Ensure(key) // the same runner, never having seen the delete
		require.Eventually(t, func() bool { return e.status(t, key).Tick > 0 }, 10*time.Second, 10*time.Millisecond)
		st := e.status(t, key)
		assert.Equal(t, int64(1), st.Tick, "the new loop's first tick, not the old one's third")
		assert.Len(t, st.History, 1)
	})
}

// The observations of a collector removed from the spec are pruned: a
// stale one left behind would hold the loop's actions. Others stay, those
// of collectors the loop still has and those written with no collector.
func TestObservationsOfRemovedCollectorsArePruned(t *testing.T) {
	ctx := context.Background()
	loop := quietLoop(t, "web-loop", "uid", time.Hour)
	loop.Spec.Collectors = []v1alpha1.CollectorSpec{
		{Name: "cpu", Push: &v1alpha1.PushCollector{TokenSecret: "s"}},
		{Name: "queue", Push: &v1alpha1.PushCollector{TokenSecret: "s"}},
	}
	now := metav1.Now()
	loop.Status.Observations = map[string]v1alpha1.Observation{
		"cpu":   {Value: resource.MustParse("91"), Time: now},
		"queue": {Value: resource.MustParse("3"), Time: now},
		"load":  {Value: resource.MustParse("7"), Time: now},
	}
	key := client.ObjectKeyFromObject(loop)
	e := startLoops(t, nil, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick == 1 }, 10*time.Second, 10*time.Millisecond)

	var cur v1alpha1.ControlLoop
	require.NoError(t, e.c.Get(ctx, key, &cur))
	cur.Spec.Collectors = cur.Spec.Collectors[:1]
	require.NoError(t, e.c.Update(ctx, &cur))
	e.l.Ensure(key)
	require.Eventually(t, func() bool { return e.status(t, key).Tick == 2 }, 10*time.Second, 10*time.Millisecond)
	obs := e.status(t, key).Observations
	assert.NotContains(t, obs, "queue", "its collector was removed")
	assert.Contains(t, obs, "cpu")
	assert.Contains(t, obs, "load", "written with no collector: a metric all the same")
}

func panics(t *testing.T, loop string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, loopPanics.WithLabelValues("factory", loop).Write(&m))
	return m.GetCounter().GetValue()
}

// Runners take their loops over (a fresh read and, sharded, a claim) a
// bounded number at a time, however many start together: each read here
// waits for a third one in flight, which the bound of 2 never lets come.
func TestTakeoversAreBounded(t *testing.T) {
	const bound = 2
	var (
		mu            sync.Mutex
		inFlight, top int
		third         = make(chan struct{})
		thirdOnce     sync.Once
	)
	loops := make([]*v1alpha1.ControlLoop, 6)
	for i := range loops {
		loops[i] = quietLoop(t, fmt.Sprintf("loop-%d", i), types.UID(fmt.Sprintf("uid-%d", i)), time.Hour)
	}
	e := startLoopsWith(t, func(l *Loops) {
		l.StatusWriteConcurrency = bound
		l.APIReader = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				mu.Lock()
				inFlight++
				top = max(top, inFlight)
				if inFlight > bound {
					thirdOnce.Do(func() { close(third) })
				}
				mu.Unlock()
				select {
				case <-third:
				case <-time.After(200 * time.Millisecond):
				}
				mu.Lock()
				inFlight--
				mu.Unlock()
				return c.Get(ctx, key, obj, opts...)
			},
		})
	}, loops...)
	for _, loop := range loops {
		require.Eventually(t, func() bool { return e.status(t, client.ObjectKeyFromObject(loop)).Tick >= 1 }, 10*time.Second, 10*time.Millisecond, loop.Name)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.LessOrEqual(t, top, bound, "loops read to be taken over at once")
}

// goroutines is a metric source that notes the goroutine each tick reads
// its metrics on: its id, and the stack that started it.
type goroutines struct {
	mu     sync.Mutex
	ids    []int
	stacks []string
}

func (g *goroutines) Metrics(context.Context, *v1alpha1.ControlLoop, time.Time) map[string]collectors.Metric {
	buf := make([]byte, 64<<10)
	buf = buf[:goruntime.Stack(buf, false)]
	id, _ := strconv.Atoi(strings.Fields(string(buf))[1])
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ids = append(g.ids, id)
	g.stacks = append(g.stacks, string(buf))
	return nil
}

func (g *goroutines) seen() ([]int, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ids), slices.Clone(g.stacks)
}

// Ticks run on the long-lived goroutines of tickStacks, never on their
// runner's: the deep stack a tick grows stays with the few goroutines
// that tick, not with each waiting runner, and is not grown again by
// copying at each tick.
func TestTicksRunOnWarmGoroutines(t *testing.T) {
	g := &goroutines{}
	loop := quietLoop(t, "warm", "warm-uid", 5*time.Millisecond)
	startLoops(t, g, loop)
	ticks := 3 * max(16, 8*goruntime.GOMAXPROCS(0)) // the pool's goroutines, each more than once
	require.Eventually(t, func() bool { ids, _ := g.seen(); return len(ids) >= ticks }, 20*time.Second, 10*time.Millisecond)
	ids, stacks := g.seen()
	distinct := map[int]bool{}
	for i, id := range ids {
		distinct[id] = true
		assert.NotContains(t, stacks[i], "controller.(*Loops).run(", "a tick ran on its runner's goroutine")
		assert.Contains(t, stacks[i], "warmstack.(*worker).serve", "one loop ticking alone always finds a goroutine of the pool idle")
	}
	assert.Less(t, len(distinct), len(ids)/2, "ticks did not share the pool's goroutines")
}
