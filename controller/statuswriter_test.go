package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
)

// writeLog is a fake API server for the status writer: it records each
// write (loop, the tick of the patch's base and of the status written),
// counts the writes in flight, and can hold writes or fail them.
type writeLog struct {
	mu       sync.Mutex
	writes   []write
	inFlight int
	maxIn    int
	hold     chan struct{}    // when set, each write waits for it to close
	stuck    bool             // each write waits until its context ends, and fails
	calls    int              // writes started, also those that failed
	started  chan write       // when set, each write is sent here as it starts
	fail     map[int64]bool   // ticks whose first write fails
	sequence map[string]int64 // status.sequence, by loop
}

type write struct {
	loop      string
	base, put int64 // ticks; -1: no base
}

func (w *writeLog) write(ctx context.Context, loop *v1alpha1.ControlLoop, b statusBase, next *v1alpha1.ControlLoopStatus) error {
	base := int64(-1)
	if b.status != nil {
		base = b.status.Tick
	}
	wr := write{loop: loop.Name, base: base, put: next.Tick}
	w.mu.Lock()
	if w.sequence == nil {
		w.sequence = map[string]int64{}
	}
	if w.sequence[loop.Name] != b.sequence {
		w.mu.Unlock()
		return errStale // as the API server's test of status.sequence
	}
	w.inFlight++
	w.maxIn = max(w.maxIn, w.inFlight)
	w.calls++
	hold, started, stuck := w.hold, w.started, w.stuck
	fail := w.fail[next.Tick]
	delete(w.fail, next.Tick)
	w.mu.Unlock()
	if started != nil {
		started <- wr
	}
	if hold != nil {
		<-hold
	}
	if stuck {
		<-ctx.Done()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if stuck {
		return ctx.Err()
	}
	if fail {
		return errors.New("the API server is busy")
	}
	w.writes = append(w.writes, wr)
	w.sequence[loop.Name]++
	return nil
}

func (w *writeLog) written() []write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]write(nil), w.writes...)
}

func named(name string) *v1alpha1.ControlLoop {
	return &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: name}}
}

func ticked(n int64) *v1alpha1.ControlLoopStatus { return &v1alpha1.ControlLoopStatus{Tick: n} }

// A loop whose status waits is written once, with its newest status: the
// statuses handed over while a write is in flight coalesce, and the next
// write patches from what was written.
func TestStatusWriterCoalesces(t *testing.T) {
	fake := &writeLog{hold: make(chan struct{}), started: make(chan write, 10)}
	w := newStatusWriter(fake.write, logr.Discard())
	w.start(2)
	var s statusSlot
	loop := named("web")
	w.put(&s, loop, ticked(1))
	assert.Equal(t, write{"web", -1, 1}, <-fake.started)
	for tick := int64(2); tick <= 5; tick++ {
		w.put(&s, loop, ticked(tick)) // while tick 1 is in flight
	}
	close(fake.hold)
	w.drain(time.Minute)
	assert.Equal(t, []write{{"web", -1, 1}, {"web", 1, 5}}, fake.written())
}

// A status written at once (a tick's intent, before it acts) waits for
// the loop's write in flight, and an older status waiting is then dropped:
// it never overwrites the newer one.
func TestStatusWriterWriteNowWinsOverOlder(t *testing.T) {
	t.Run("waits for the write in flight", func(t *testing.T) {
		fake := &writeLog{hold: make(chan struct{}), started: make(chan write, 10)}
		w := newStatusWriter(fake.write, logr.Discard())
		w.start(2)
		var s statusSlot
		loop := named("web")
		w.put(&s, loop, ticked(1))
		<-fake.started
		now := make(chan error)
		go func() {
			_, err := w.writeNow(context.Background(), &s, loop, func() *v1alpha1.ControlLoopStatus { return ticked(3) })
			now <- err
		}()
		time.Sleep(50 * time.Millisecond) // time for a write that did not wait to start
		close(fake.hold)
		require.NoError(t, <-now)
		w.drain(time.Minute)
		assert.Equal(t, 1, fake.maxIn, "two writes of one loop at once")
		assert.Equal(t, []write{{"web", -1, 1}, {"web", 1, 3}}, fake.written())
	})
	t.Run("drops the older one waiting", func(t *testing.T) {
		fake := &writeLog{}
		w := newStatusWriter(fake.write, logr.Discard())
		var s statusSlot
		loop := named("web")
		w.put(&s, loop, ticked(2))
		_, err := w.writeNow(context.Background(), &s, loop, func() *v1alpha1.ControlLoopStatus { return ticked(3) })
		require.NoError(t, err)
		w.start(1)
		w.drain(time.Minute)
		assert.Equal(t, []write{{"web", -1, 3}}, fake.written(), "tick 2 is older than the intent of tick 3")
	})
}

// At most the writer's concurrency of writes are in flight, however many
// loops wait; on drain, every loop's newest status is written, also one
// whose write failed and waits to be tried again.
func TestStatusWriterBoundsWritesAndDrainsEveryLoop(t *testing.T) {
	const loops, workers = 50, 3
	fake := &writeLog{hold: make(chan struct{}), fail: map[int64]bool{}}
	for i := range loops {
		fake.fail[int64(100+i)] = i%10 == 0 // a few fail once
	}
	w := newStatusWriter(fake.write, logr.Discard())
	w.start(workers)
	slots := make([]statusSlot, loops)
	for i := range slots {
		w.put(&slots[i], named(fmt.Sprint(i)), ticked(int64(100+i)))
	}
	for i := range slots {
		w.put(&slots[i], named(fmt.Sprint(i)), ticked(int64(200+i))) // their final statuses
	}
	close(fake.hold)
	w.drain(time.Minute)

	assert.LessOrEqual(t, fake.maxIn, workers)
	last := map[string]int64{}
	for _, wr := range fake.written() {
		assert.Greater(t, wr.put, last[wr.loop], "loop %s: an older status written after a newer one", wr.loop)
		last[wr.loop] = wr.put
	}
	for i := range slots {
		assert.Equal(t, int64(200+i), last[fmt.Sprint(i)], "loop %d's final status", i)
	}
}

// A drain that cannot write everything in its time (an API server that
// answers nothing) cuts the writes in flight, starts no other and returns:
// the rest are dropped, as a crash would leave them, and the replica can
// hand its Lease back before it is killed.
func TestStatusWriterDrainGivesUpInTime(t *testing.T) {
	const loops, workers = 20, 3
	fake := &writeLog{stuck: true, started: make(chan write, loops)}
	w := newStatusWriter(fake.write, logr.Discard())
	w.start(workers)
	slots := make([]statusSlot, loops)
	for i := range slots {
		w.put(&slots[i], named(fmt.Sprint(i)), ticked(1))
	}
	for range workers {
		<-fake.started // every worker is stuck in a write
	}
	w.drain(100 * time.Millisecond)
	assert.Empty(t, fake.written())
	fake.mu.Lock()
	defer fake.mu.Unlock()
	assert.Equal(t, workers, fake.calls, "writes started: those in flight when the time was up, no other")
	assert.EqualValues(t, loops, w.dropped.Load(), "every loop's status dropped")
}

// A failed write is tried again, with the loop's newest status, from what
// was last written.
func TestStatusWriterRetriesWithNewest(t *testing.T) {
	fake := &writeLog{fail: map[int64]bool{1: true}, started: make(chan write, 10)}
	w := newStatusWriter(fake.write, logr.Discard())
	w.start(1)
	var s statusSlot
	loop := named("web")
	w.put(&s, loop, ticked(1))
	<-fake.started // fails
	w.put(&s, loop, ticked(2))
	require.Equal(t, write{"web", -1, 2}, <-fake.started)
	w.drain(time.Minute)
	assert.Equal(t, []write{{"web", -1, 2}}, fake.written())
}

// Nothing is written to a loop that is gone, and a reset (the status read
// again, of a loop created again) drops what waited for the old one.
func TestStatusWriterSkipsGoneAndReset(t *testing.T) {
	fake := &writeLog{}
	w := newStatusWriter(fake.write, logr.Discard())
	var gone, recreated statusSlot
	w.put(&gone, named("gone"), ticked(1))
	gone.gone.Store(true)
	w.put(&recreated, named("again"), ticked(7))
	w.reset(&recreated, &v1alpha1.ControlLoop{Status: *ticked(0)})
	w.start(1)
	w.drain(time.Minute)
	assert.Empty(t, fake.written())
}

// A write of a runner that another has replaced (a crashed replica's,
// landing late) is refused, however it is ordered with the successor's:
// the older status never overwrites the newer, and the refused runner
// writes nothing more until it has read the loop again.
func TestStatusWriterNeverOlderOverNewer(t *testing.T) {
	fake := &writeLog{sequence: map[string]int64{"web": 5}}
	w := newStatusWriter(fake.write, logr.Discard())
	loop := named("web")
	read := &v1alpha1.ControlLoop{Status: v1alpha1.ControlLoopStatus{Tick: 9, Sequence: 5}}
	var before, after statusSlot // two runners of the loop, both from the status read
	w.reset(&before, read)
	w.reset(&after, read)

	_, err := w.writeNow(context.Background(), &after, loop, func() *v1alpha1.ControlLoopStatus { return ticked(11) })
	require.NoError(t, err)
	w.put(&before, loop, ticked(10)) // lands late
	w.start(1)
	w.drain(time.Minute)
	assert.Equal(t, []write{{"web", 9, 11}}, fake.written())
	assert.True(t, before.stale.Load(), "the replaced runner knows")

	_, err = w.writeNow(context.Background(), &before, loop, func() *v1alpha1.ControlLoopStatus { return ticked(12) })
	require.ErrorIs(t, err, errStale, "nothing written until it reads the loop again")
	w.reset(&before, &v1alpha1.ControlLoop{Status: v1alpha1.ControlLoopStatus{Tick: 11, Sequence: 6}})
	_, err = w.writeNow(context.Background(), &before, loop, func() *v1alpha1.ControlLoopStatus { return ticked(12) })
	require.NoError(t, err)
	assert.Equal(t, []write{{"web", 9, 11}, {"web", 11, 12}}, fake.written())
}

// A status write tests the sequence its runner last wrote or read, moves
// it on, and carries the owned fields that changed alone: nothing of those
// others write (observations, overrides). A status with no sequence yet is
// written on the condition of the resourceVersion read.
func TestStatusPatchIsConditional(t *testing.T) {
	old := &v1alpha1.ControlLoopStatus{Tick: 1, Phase: v1alpha1.PhaseRunning, PolicyRevision: "r1",
		Observations: map[string]v1alpha1.Observation{"jitter": {}}}
	next := &v1alpha1.ControlLoopStatus{Tick: 2, Phase: v1alpha1.PhaseRunning, Sequence: 99}

	patch, err := statusPatch(statusBase{status: old, sequence: 7}, next)
	require.NoError(t, err)
	raw, err := patch.Data(nil)
	require.NoError(t, err)
	assert.Equal(t, types.JSONPatchType, patch.Type())
	assert.JSONEq(t, `[{"op": "test", "path": "/status/sequence", "value": 7},
		{"op": "replace", "path": "/status/sequence", "value": 8},
		{"op": "add", "path": "/status/tick", "value": 2},
		{"op": "remove", "path": "/status/policyRevision"}]`, string(raw))

	patch, err = statusPatch(statusBase{status: old, resourceVersion: "42"}, next)
	require.NoError(t, err)
	raw, err = patch.Data(nil)
	require.NoError(t, err)
	assert.Equal(t, types.MergePatchType, patch.Type())
	assert.JSONEq(t, `{"metadata": {"resourceVersion": "42"}, "status": {"sequence": 1, "tick": 2, "policyRevision": null}}`, string(raw))
}

// A runner that takes a loop over counts a change recorded less than
// changesLand before as made then: its predecessor may have died acting.
func TestTakenOverRestartsRecentCooldowns(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	change := func(d time.Duration) *metav1.MicroTime { m := metav1.NewMicroTime(at.Add(d)); return &m }
	read := &v1alpha1.ControlLoopStatus{Targets: []v1alpha1.TargetStatus{
		{Name: "recent", LastChange: change(-2 * time.Second)},
		{Name: "old", LastChange: change(-changesLand)},
		{Name: "never"},
	}}
	got := takenOver(read, at)
	assert.Equal(t, at, got.Targets[0].LastChange.Time)
	assert.Equal(t, at.Add(-changesLand), got.Targets[1].LastChange.Time)
	assert.Nil(t, got.Targets[2].LastChange)
	assert.Equal(t, at.Add(-2*time.Second), read.Targets[0].LastChange.Time, "the status read is left as read")
}

// writeThrough makes the newest status durable before it returns (a
// supervising loop's, before it writes overrides): the one waiting is
// written now, and a status already written is not written again.
func TestStatusWriterWriteThrough(t *testing.T) {
	fake := &writeLog{}
	w := newStatusWriter(fake.write, logr.Discard())
	var s statusSlot
	loop := named("writer")
	w.put(&s, loop, ticked(1))
	newest := ticked(2)
	require.NoError(t, w.writeThrough(context.Background(), &s, loop, newest))
	require.NoError(t, w.writeThrough(context.Background(), &s, loop, newest))
	w.start(1)
	w.drain(time.Minute)
	assert.Equal(t, []write{{"writer", -1, 2}}, fake.written())
}

// A released runner's waiting status is dropped when it adds only quiet
// ticks, and written when it holds more (an acting tick's, even replaced
// by a quiet one since); a write in flight is waited for either way.
func TestStatusWriterDropsOnlyAReleasedRunnersQuietTicks(t *testing.T) {
	t.Run("waiting", func(t *testing.T) {
		fake := &writeLog{}
		w := newStatusWriter(fake.write, logr.Discard())
		var quiet, acted statusSlot
		w.putQuiet(&quiet, named("quiet"), ticked(2))
		w.put(&acted, named("acted"), ticked(1))
		w.putQuiet(&acted, named("acted"), ticked(2))
		assert.False(t, w.dropQuiet(&quiet), "quiet ticks were kept to be written")
		require.True(t, w.dropQuiet(&acted), "an acting tick's status, replaced by a quiet one, was dropped")
		w.settle(&acted)
		w.start(1)
		w.drain(time.Minute)
		assert.Equal(t, []write{{"acted", -1, 2}}, fake.written())
	})
	t.Run("in flight", func(t *testing.T) {
		fake := &writeLog{hold: make(chan struct{}), started: make(chan write, 1)}
		w := newStatusWriter(fake.write, logr.Discard())
		w.start(1)
		var s statusSlot
		w.putQuiet(&s, named("web"), ticked(1))
		<-fake.started
		dropped := make(chan bool)
		go func() { dropped <- w.dropQuiet(&s) }()
		select {
		case <-dropped:
			t.Fatal("dropQuiet returned while the loop's write was in flight")
		case <-time.After(100 * time.Millisecond):
		}
		close(fake.hold)
		assert.False(t, <-dropped)
		w.drain(time.Minute)
		assert.Equal(t, []write{{"web", -1, 1}}, fake.written())
	})
}

// A tick's status is handed over as quiet ticks only when nothing but
// quiet ticks came since the status handed over before: an acting tick's,
// or one owed (its loop's ownership unknown as it ticked), is not.
func TestQuietTicksAreHandedOverAsSuch(t *testing.T) {
	acted := tickResult{entry: v1alpha1.HistoryEntry{Tick: 2, Applied: []v1alpha1.Action{{Target: "web"}}}}
	for _, c := range []struct {
		name  string
		res   tickResult
		owed  bool
		quiet bool
	}{
		{"quiet", tickResult{entry: v1alpha1.HistoryEntry{Tick: 2}}, false, true},
		{"acted", acted, false, false},
		{"failed", tickResult{entry: v1alpha1.HistoryEntry{Tick: 2, Error: "no input"}}, false, false},
		{"owed", tickResult{entry: v1alpha1.HistoryEntry{Tick: 2}}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := &Loops{StatusFlush: time.Millisecond}
			st := ticked(1)
			r := &runner{status: st, handed: st, owed: c.owed}
			l.save(r, named("web"), c.res, time.Second)
			require.NotNil(t, r.out.pending, "nothing handed over")
			assert.Equal(t, c.quiet, r.out.pending.quiet)
		})
	}
}
