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
	hold     chan struct{}  // when set, each write waits for it to close
	started  chan write     // when set, each write is sent here as it starts
	fail     map[int64]bool // ticks whose first write fails
}

type write struct {
	loop      string
	base, put int64 // ticks; -1: no base
}

func (w *writeLog) write(_ context.Context, loop *v1alpha1.ControlLoop, old, next *v1alpha1.ControlLoopStatus) error {
	base := int64(-1)
	if old != nil {
		base = old.Tick
	}
	wr := write{loop: loop.Name, base: base, put: next.Tick}
	w.mu.Lock()
	w.inFlight++
	w.maxIn = max(w.maxIn, w.inFlight)
	hold, started := w.hold, w.started
	fail := w.fail[next.Tick]
	delete(w.fail, next.Tick)
	w.mu.Unlock()
	if started != nil {
		started <- wr
	}
	if hold != nil {
		<-hold
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if fail {
		return errors.New("the API server is busy")
	}
	w.writes = append(w.writes, wr)
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
	w.drain()
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
		w.drain()
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
		w.drain()
		assert.Equal(t, []write{{"web", -1, 3}}, fake.written(), "tick 2 is older than the intent of tick 3")
	})
}

// At most the writer's concurrency of writes are in flight, however many
// loops wait; on drain, every loop's newest status is written, also one
// whose write failed and waits to be tried again.
func TestStatusWriterBoundsWritesAndDrainsEveryLoop(t *testing.T) {
	const loops, workers = 50, 3
	fake := &writeLog{hold: make(chan struct{}), fail: map[int64]bool{}}
	w := newStatusWriter(fake.write, logr.Discard())
	w.start(workers)
	slots := make([]statusSlot, loops)
	for i := range slots {
		fake.fail[int64(100+i)] = i%10 == 0 // a few fail once
		w.put(&slots[i], named(fmt.Sprint(i)), ticked(int64(100+i)))
	}
	for i := range slots {
		w.put(&slots[i], named(fmt.Sprint(i)), ticked(int64(200+i))) // their final statuses
	}
	close(fake.hold)
	w.drain()

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
	w.drain()
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
	w.reset(&recreated, ticked(0))
	w.start(1)
	w.drain()
	assert.Empty(t, fake.written())
}
