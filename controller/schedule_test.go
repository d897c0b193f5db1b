package controller

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// onGrid says whether t is a slot of the grid.
func onGrid(t time.Time, period time.Duration, stagger float64) bool {
	return slotFrom(t, period, stagger).Equal(t)
}

// FuzzSchedule checks the properties of a loop's schedule that must always
// hold, for any tick time, time it took the tick to record itself,
// interval, minInterval, flush interval and stagger:
//   - a loop never ticks again sooner than minInterval after the last tick
//     recorded itself, nor at once;
//   - after a timed tick, it ticks again on a slot of its grid, and skips
//     no slot past minInterval;
//   - after a woken tick, a whole interval later, unless that is too soon;
//   - when a cooldown that refused an action ends sooner than that, at its
//     end (or minInterval after the tick, if later), never later;
//   - the quiet status is handed over again on a slot of the flush grid,
//     after the last hand-over and no later than one flush interval after it.
func FuzzSchedule(f *testing.F) {
	f.Add(int64(1764900000123456789), int64(time.Second), int64(50*time.Millisecond), int64(10*time.Second), uint64(0), false, int64(0), int64(0))
	f.Add(int64(1764900000000000000), int64(100*time.Millisecond), int64(80*time.Millisecond), int64(time.Second), uint64(1<<63), true, int64(30*time.Millisecond), int64(0))
	f.Add(int64(-5), int64(time.Hour), int64(0), int64(time.Minute), uint64(1<<64-1), false, int64(2*time.Hour), int64(0))
	f.Add(int64(1764900000000000000), int64(250*time.Millisecond), int64(50*time.Millisecond), int64(10*time.Second), uint64(1<<62), false, int64(2*time.Millisecond), int64(253*time.Millisecond))
	f.Add(int64(1764900000000000000), int64(time.Second), int64(50*time.Millisecond), int64(10*time.Second), uint64(1<<62), true, int64(time.Millisecond), int64(20*time.Millisecond))
	f.Fuzz(func(t *testing.T, lastNs, intervalNs, minIntervalNs, flushNs int64, stag uint64, woken bool, tookNs, cooldownNs int64) {
		// Times within a century of now; periods from 1 ns to a day; a
		// tick recorded up to two days after its start.
		const century = int64(100 * 365 * 24 * time.Hour)
		last := time.Unix(0, 1764900000000000000+lastNs%century)
		interval := time.Duration(1 + abs(intervalNs)%int64(24*time.Hour))
		minInterval := time.Duration(abs(minIntervalNs) % int64(24*time.Hour))
		flush := time.Duration(1 + abs(flushNs)%int64(24*time.Hour))
		stagger := float64(stag>>11) / (1 << 53)
		ticked := last.Add(time.Duration(abs(tookNs) % int64(48*time.Hour)))
		var cooldownEnds time.Time // none refused an action when 0
		if cooldownNs != 0 {
			cooldownEnds = last.Add(time.Duration(abs(cooldownNs) % int64(48*time.Hour)))
		}

		started := tickStart{at: last, woken: woken}
		if !cooldownEnds.IsZero() {
			next := nextTick(started, ticked, cooldownEnds, interval, minInterval, stagger)
			plain := nextTick(started, ticked, time.Time{}, interval, minInterval, stagger)
			require.False(t, next.After(plain), "a cooldown's end put the next tick later")
			require.False(t, next.Before(ticked.Add(minInterval)), "sooner than minInterval after the recorded tick")
			if cooldownEnds.Before(plain) {
				require.Equal(t, latest(cooldownEnds, ticked.Add(max(minInterval, time.Nanosecond))), next, "not at the cooldown's end")
			}
			return
		}
		next := nextTick(started, ticked, time.Time{}, interval, minInterval, stagger)
		gap := next.Sub(ticked)
		require.Positive(t, gap, "ticked again at once")
		require.GreaterOrEqual(t, gap, minInterval, "sooner than minInterval after the recorded tick")
		if woken {
			require.False(t, next.Before(last.Add(interval)), "a woken tick's next sooner than an interval after it")
			if ticked.Add(minInterval).Before(last.Add(interval)) {
				require.Equal(t, last.Add(interval), next, "a woken tick's next")
			}
		} else {
			require.True(t, onGrid(next, interval, stagger), "next tick %s off the grid", next)
			require.LessOrEqual(t, gap, max(minInterval, time.Nanosecond)+interval, "a slot skipped")
		}

		due := flushDue(last, flush, stagger)
		require.True(t, onGrid(due, flush, stagger), "flush %s off the grid", due)
		require.True(t, due.After(last), "flushed again at the hand-over")
		require.LessOrEqual(t, due.Sub(last), flush, "a status older than the flush interval")
	})
}

func abs(v int64) int64 {
	if v < 0 {
		return -(v + 1) // no overflow at MinInt64
	}
	return v
}

// Every replica puts a loop on the same slots; loops named alike, on
// slots apart (keyhash spreads them).
func TestStaggersAreTheLoops(t *testing.T) {
	key := types.NamespacedName{Namespace: "scale", Name: "loop-0001"}
	assert.Equal(t, staggerOf(key), staggerOf(types.NamespacedName{Namespace: "scale", Name: "loop-0001"}))
	assert.InDelta(t, 0.5, math.Abs(staggerOf(key)-staggerOf(types.NamespacedName{Namespace: "scale", Name: "loop-0002"})), 0.49)
}

// A timed tick, on time, late or the first, says its loop ticks next on
// its own slot of the interval; a woken one, a whole interval later;
// either, never sooner than minInterval after the time it recorded (a
// takeover can make a tick start long before it records itself).
func TestTicksFallOnTheLoopsSlots(t *testing.T) {
	loop := echoLoop(t, `{}`)
	loop.Spec.Interval = metav1.Duration{Duration: time.Second}
	e := startLoopsWith(t, func(*Loops) {}) // no runner: the test ticks itself
	require.NoError(t, e.c.Create(context.Background(), loop))
	r := e.l.newRunner(client.ObjectKeyFromObject(loop))
	recorded := func() time.Time { return r.status.History[len(r.status.History)-1].Time.Time }
	// Wall clock times (Round(0)): the grid is the wall clock's, and a
	// tick's next is a duration after its start, which the monotonic clock
	// would measure otherwise, off the wall's by nanoseconds.
	now := time.Now().Round(0)
	for _, at := range []time.Time{now, now.Add(137 * time.Millisecond), now.Add(-640 * time.Millisecond), now.Add(-3 * time.Second)} {
		next, ok := e.l.once(context.Background(), r, tickStart{at: at})
		require.True(t, ok)
		due := at.Add(next)
		assert.True(t, onGrid(due, time.Second, r.stagger), "tick started at %s: next at %s, off the loop's slots", at, due)
		assert.False(t, due.Before(recorded().Add(defaultMinInterval)), "next at %s, within minInterval of the tick at %s", due, recorded())

		next, ok = e.l.once(context.Background(), r, tickStart{at: at, woken: true})
		require.True(t, ok)
		due = at.Add(next)
		soonest := recorded().Add(defaultMinInterval)
		assert.False(t, due.Before(soonest), "after a woken tick: next at %s, within minInterval of the tick at %s", due, recorded())
		if at.Add(time.Second).After(soonest) {
			assert.Equal(t, time.Second, next, "after a woken tick")
		}
	}
}

// A quiet tick hands its status over once the loop's slot of the flush
// interval has passed since the last hand-over, however recent that was,
// and not before.
func TestQuietStatusHandedOverOnItsSlot(t *testing.T) {
	const flush = time.Hour
	now := time.Now()
	quiet := tickResult{phase: v1alpha1.PhaseRunning}
	status := &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning, Tick: 1}
	staggerAt := func(ago time.Duration) float64 { // the slot that was ago
		return float64(now.Add(-ago).UnixNano()%int64(flush)) / float64(flush)
	}
	for _, c := range []struct {
		name    string
		slotAgo time.Duration
		handed  bool
	}{
		{"slot passed since the hand-over", time.Second, true},
		{"slot before the hand-over", 3 * time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &Loops{StatusFlush: flush}
			r := l.newRunner(types.NamespacedName{Namespace: "factory", Name: "quiet"})
			r.stagger = staggerAt(c.slotAgo)
			r.handed, r.handedAt = &v1alpha1.ControlLoopStatus{Phase: v1alpha1.PhaseRunning}, now.Add(-2*time.Second)
			r.status = status
			l.save(r, &v1alpha1.ControlLoop{}, quiet, time.Second)
			assert.Equal(t, c.handed, r.handed == status)
		})
	}
}

// A woken tick puts the loop's next timed tick a whole interval after it,
// not on its slot: a loop woken by data about as often as its interval
// ticks on the data alone, not on the data and its slots too.
func TestWokenTickPostponesTheSlot(t *testing.T) {
	const interval = time.Second
	loop := quietLoop(t, "woken", "woken-uid", interval)
	loop.Spec.MinInterval = &metav1.Duration{Duration: 10 * time.Millisecond}
	key := client.ObjectKeyFromObject(loop)
	// Every tick's status written, so that the test counts them.
	e := startLoopsWith(t, func(l *Loops) { l.StatusFlush = time.Nanosecond }, loop)
	ticks := func() int64 { return e.status(t, key).Tick }
	require.Eventually(t, func() bool { return ticks() >= 2 }, 10*time.Second, 5*time.Millisecond,
		"the first tick, and the next on the loop's slot")

	// Woken 300 ms before a slot (and 700 ms after the one before).
	wake := slotFrom(time.Now().Add(400*time.Millisecond), interval, staggerOf(key)).Add(-300 * time.Millisecond)
	time.Sleep(time.Until(wake))
	before := ticks()
	e.l.Ensure(key)
	require.Eventually(t, func() bool { return ticks() > before }, 10*time.Second, 5*time.Millisecond, "the woken tick")
	time.Sleep(time.Until(wake.Add(650 * time.Millisecond)))
	assert.Equal(t, before+1, ticks(), "a tick on the slot 300 ms after the woken one")
}

// A tick whose action a cooldown refused says the loop ticks again when the
// cooldown ends, not on its next slot (which would meet a cooldown that is a
// multiple of the interval a few milliseconds early, and double it). A tick
// within minInterval of the end acts, at the end; the one after it is on
// the slot again.
func TestCooldownEndIsAskedAgain(t *testing.T) {
	const interval, cooldown = 20 * time.Second, 2 * time.Second
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	loop := echoLoop(t, `{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 4}}]}`)
	loop.Spec.Interval = metav1.Duration{Duration: interval}
	loop.Spec.Safety.Cooldown = metav1.Duration{Duration: cooldown}
	loop.Spec.Targets[0].Bandwidth = nil
	web := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: loop.Namespace, Name: "web"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(3))}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(loop, web).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()
	cpu := 91.0
	e := startLoopsWith(t, func(l *Loops) { // no runner: the test ticks itself
		l.Client, l.APIReader, l.Actuators = c, c, actuators.NewRegistry(replicas.Actuator{})
		l.Metrics = freshCPU{&cpu}
	})
	r := e.l.newRunner(client.ObjectKeyFromObject(loop))
	r.minInterval = 10 * time.Millisecond
	tickAt := func(at time.Time) time.Time { // when the loop ticks next
		next, ok := e.l.once(context.Background(), r, tickStart{at: at})
		require.True(t, ok)
		return at.Add(next)
	}
	now := time.Now().Round(0) // wall clock, as the slots are
	// The loop's slot half an interval away.
	r.stagger = float64(now.Add(interval/2).UnixNano()%int64(interval)) / float64(interval)

	slot := tickAt(now)
	require.Len(t, r.status.History, 1)
	require.Len(t, r.status.History[0].Applied, 1, "the first tick scales web")
	assert.True(t, onGrid(slot, interval, r.stagger))
	changed := lastChanges(r.status)["web"]

	ends := tickAt(time.Now().Round(0))
	require.Contains(t, strings.Join(r.status.History[1].Guard, "\n"), "in cooldown")
	assert.True(t, changed.Add(cooldown).Equal(ends), "a tick refused by the cooldown: the next at %s, not at its end %s", ends, changed.Add(cooldown))

	// The policy asks for 5 now; its tick comes 20 ms before the cooldown
	// ends (within minInterval, 50 ms): it acts, at the end.
	params := `{"decision": {"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 5}}]}}`
	require.NoError(t, c.Get(context.Background(), client.ObjectKeyFromObject(loop), loop))
	asked := loop.DeepCopy()
	asked.Spec.Policy.Params.Raw = []byte(params)
	// A patch without the resourceVersion: the status writer may write meanwhile.
	require.NoError(t, c.Patch(context.Background(), asked, client.MergeFrom(loop)))
	early := ends.Add(-20 * time.Millisecond)
	time.Sleep(time.Until(early))
	next := tickAt(early)
	require.Len(t, r.status.History, 3)
	require.Len(t, r.status.History[2].Applied, 1, "the tick 20 ms before the cooldown's end: %v", r.status.History[2].Guard)
	again := lastChanges(r.status)["web"]
	assert.False(t, again.Before(changed.Add(cooldown)), "changed again at %s, inside the cooldown from %s", again, changed)
	assert.True(t, onGrid(next, interval, r.stagger), "the tick after it: %s, on the slot", next)
}

// freshCPU is a metric source of one metric, cpu, observed as it is asked.
type freshCPU struct{ value *float64 }

func (f freshCPU) Metrics(_ context.Context, _ *v1alpha1.ControlLoop, now time.Time) map[string]collectors.Metric {
	return map[string]collectors.Metric{"cpu": {Value: f.value, ObservedAt: now}}
}
