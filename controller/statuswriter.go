package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/workqueue"

	"governor.dev/governor/api/v1alpha1"
)

// DefaultStatusWriteConcurrency is how many status writes are in flight at
// most, by default: enough for about 1,000 writes a second where the API
// server answers one in 10 ms, few enough that a slow API server is not
// asked for hundreds at once (which slowed every request, the Lease's too).
const DefaultStatusWriteConcurrency = 10

// statusWriteTimeout bounds one status write; a write that fails is tried
// again with the loop's newest status.
const statusWriteTimeout = 10 * time.Second

// statusDrainTimeout bounds how long a stopping replica writes the loops'
// last statuses: config/manager gives the Pod 10 s from SIGTERM to
// SIGKILL, and the runners' own stop and the Lease's release come before
// and after. A saturated API server took longer than 30 s for 200 loops.
const statusDrainTimeout = 5 * time.Second

// writeStatusFunc writes a loop's status: what the runner owns, from base
// (what the API server holds, as last written or read) to next, on the
// condition that the API server still holds base's sequence. It fails
// with errStale when it does not.
type writeStatusFunc func(ctx context.Context, loop *v1alpha1.ControlLoop, base statusBase, next *v1alpha1.ControlLoopStatus) error

// statusBase is what the API server holds of a loop's owned status fields,
// as a runner last wrote or read them: the base of its next write.
type statusBase struct {
	status *v1alpha1.ControlLoopStatus
	// sequence is status.sequence on the API server; each write moves it
	// on by one, on the condition that it is still this.
	sequence int64
	// resourceVersion is the loop's as read: the condition of the first
	// write of a status with no sequence yet.
	resourceVersion string
}

// asRead is the base of a loop as read, sharing its status.
func asRead(loop *v1alpha1.ControlLoop) statusBase {
	return statusBase{status: &loop.Status, sequence: loop.Status.Sequence, resourceVersion: loop.ResourceVersion}
}

// next is the base once next is written on it.
func (b statusBase) next(next *v1alpha1.ControlLoopStatus) statusBase {
	return statusBase{status: next, sequence: b.sequence + 1}
}

// errStale says a status write was refused: the API server holds a status
// written since this runner last wrote or read it (by a runner that
// replaced it, or one of a crashed replica landing late). The runner reads
// the loop again before it acts or writes.
var errStale = errors.New("the loop's status was written by another runner since this one read it")

// statusWriter writes the loops' statuses off their ticks' path, a bounded
// number at a time. A tick hands its status over (put) and goes on; a loop
// whose status waits is written once, with its newest status, and never an
// older status after a newer one. A slow API server thus makes the
// written status older, never a tick late, and the Lease's renewal never
// waits behind hundreds of writes.
type statusWriter struct {
	write writeStatusFunc
	log   logr.Logger
	queue workqueue.TypedRateLimitingInterface[*statusSlot]
	wg    sync.WaitGroup
	// draining is set once no more statuses come: a failed write is then
	// logged, not tried again.
	draining atomic.Bool
	// stopping ends when drain's time is up: the writes in flight are cut,
	// what is left is dropped (and counted in dropped).
	stopping context.Context
	stop     context.CancelFunc
	dropped  atomic.Int64
	mu       sync.Mutex
	// waiting are the slots with a status to write, also those waiting
	// for a retry outside the queue: drain writes them all.
	waiting map[*statusSlot]struct{}
}

// statusSlot is one runner's status on its way to the API server.
type statusSlot struct {
	// writing is held while the loop's status is written: one write of a
	// loop at a time, in the order the statuses were made.
	writing sync.Mutex
	// written is what the API server has (the base of the next write);
	// guarded by writing.
	written statusBase
	// stale is set when a write was refused as stale: nothing more is
	// written until the runner has read the loop again (reset).
	stale   atomic.Bool
	mu      sync.Mutex
	pending *pendingStatus // the newest status not yet written; guarded by mu
	sending *pendingStatus // the one being written, if any; guarded by mu
	// gone is set when the loop was deleted: nothing is written to a loop
	// that may since have been created again under the same name.
	gone atomic.Bool
	// released is set once the runner was given away to another replica:
	// its quiet ticks are not written (dropQuiet).
	released atomic.Bool
	// wake, when set, is the runner's: a write refused as stale wakes it
	// to read its loop again now, not at its next tick (a new owner's
	// deferred claim refused by the old owner's handover waited an
	// interval for it, its ticks meanwhile unrecorded).
	wake chan<- struct{}
}

// landed is the status.sequence of the last write of the slot known to
// have landed (or of the status read, after reset).
func (s *statusSlot) landed() int64 {
	s.writing.Lock()
	defer s.writing.Unlock()
	return s.written.sequence
}

type pendingStatus struct {
	loop   *v1alpha1.ControlLoop
	status *v1alpha1.ControlLoopStatus
	// quiet: status adds only quiet ticks to what was written (nothing
	// acted, failed, was clamped, or changed phase, conditions or owner).
	quiet bool
}

func newStatusWriter(write writeStatusFunc, log logr.Logger) *statusWriter {
	stopping, stop := context.WithCancel(context.Background())
	return &statusWriter{
		write:    write,
		log:      log,
		stopping: stopping,
		stop:     stop,
		waiting:  map[*statusSlot]struct{}{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[*statusSlot](100*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[*statusSlot]{Name: "governor_status_writes"}),
	}
}

// start runs workers that write statuses until drain.
func (w *statusWriter) start(workers int) {
	for range max(workers, 1) {
		w.wg.Go(func() {
			for {
				s, shutdown := w.queue.Get()
				if shutdown {
					return
				}
				w.process(s)
				w.queue.Done(s)
			}
		})
	}
}

// drain writes every status handed over so far, then stops the workers.
// Nothing may be handed over once it is called. What is not written
// within is dropped, the writes in flight cut short: as a crash would
// leave them (the claim and status.sequence keep a successor's statuses
// safe from them), but with the Lease handed back before the Pod's
// termination grace period ends.
func (w *statusWriter) drain(within time.Duration) {
	w.draining.Store(true)
	w.mu.Lock()
	for s := range w.waiting {
		w.queue.Add(s) // also those waiting for a retry
	}
	w.mu.Unlock()
	late := time.AfterFunc(within, w.stop)
	defer late.Stop()
	w.queue.ShutDownWithDrain()
	w.wg.Wait()
	if n := w.dropped.Load(); n > 0 {
		w.log.Info("statuses not written: stopping", "loops", n, "within", within)
	}
}

// put hands a loop's status over to be written: it replaces one of the
// loop's still waiting, if any.
func (w *statusWriter) put(s *statusSlot, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus) {
	w.hand(s, &pendingStatus{loop: loop, status: status})
}

// putQuiet hands over a status that adds only quiet ticks to the one
// handed over before: a released runner's is dropped (dropQuiet).
func (w *statusWriter) putQuiet(s *statusSlot, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus) {
	w.hand(s, &pendingStatus{loop: loop, status: status, quiet: true})
}

func (w *statusWriter) hand(s *statusSlot, p *pendingStatus) {
	if s.stale.Load() {
		return // the runner reads the loop again before anything is written
	}
	s.mu.Lock()
	if q := s.pending; q != nil && q != s.sending && !q.quiet {
		p.quiet = false // it holds the one it replaces, not written yet
	}
	s.pending = p
	s.mu.Unlock()
	w.mu.Lock()
	w.waiting[s] = struct{}{}
	w.mu.Unlock()
	w.queue.Add(s)
}

// writeNow writes a loop's status at once, after the write of the loop in
// flight, if any: the status build returns then, which must be newer than
// any handed over before (one waiting is dropped once it is written).
func (w *statusWriter) writeNow(ctx context.Context, s *statusSlot, loop *v1alpha1.ControlLoop, build func() *v1alpha1.ControlLoopStatus) (*v1alpha1.ControlLoopStatus, error) {
	s.writing.Lock()
	defer s.writing.Unlock()
	if s.stale.Load() {
		return nil, errStale
	}
	status := build()
	if err := w.write(ctx, loop, s.written, status); err != nil {
		w.refused(s, err)
		return nil, err
	}
	s.written = s.written.next(status)
	w.done(s, nil)
	return status, nil
}

// writeThrough makes a loop's status durable at once: it waits for the
// write in flight, if any, then writes status unless it is what was
// written. A supervising loop calls it before it writes overrides.
func (w *statusWriter) writeThrough(ctx context.Context, s *statusSlot, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus) error {
	s.writing.Lock()
	defer s.writing.Unlock()
	if s.stale.Load() {
		return errStale
	}
	if s.written.status == status {
		return nil
	}
	if err := w.write(ctx, loop, s.written, status); err != nil {
		w.refused(s, err)
		return err
	}
	s.written = s.written.next(status)
	w.done(s, nil)
	return nil
}

// settle writes a loop's waiting status, if any, at once: a runner
// released to another replica leaves what it handed over written.
func (w *statusWriter) settle(s *statusSlot) { w.process(s) }

// dropQuiet marks a released runner's slot: its quiet ticks are not
// written from now on. It waits for the loop's write in flight, if any,
// drops the waiting status if that adds only quiet ticks, and says whether
// one still waits (to settle). A released runner's quiet ticks need not be in
// the loop's history (those since its last hand-over are not either), and
// writing them held a rebalance's view back: every write of a saturated
// API server took 0.5-0.9 s (BenchmarkShards, run L13).
func (w *statusWriter) dropQuiet(s *statusSlot) bool {
	s.released.Store(true) // also for a worker that writes before this
	s.writing.Lock()
	defer s.writing.Unlock()
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p == nil || p.quiet || s.stale.Load() || s.gone.Load() {
		w.done(s, p)
		return false
	}
	return true
}

// refused marks a slot stale when its write was refused as stale: what
// waits is dropped, and nothing is written until reset.
func (w *statusWriter) refused(s *statusSlot, err error) {
	if errors.Is(err, errStale) {
		s.stale.Store(true)
		w.done(s, nil)
		if s.wake != nil {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// reset says what the API server has of a loop, as read: what is waiting
// (of a loop since deleted and created again, or refused as stale) is
// dropped.
func (w *statusWriter) reset(s *statusSlot, read *v1alpha1.ControlLoop) {
	s.writing.Lock()
	defer s.writing.Unlock()
	s.written = statusBase{status: read.Status.DeepCopy(), sequence: read.Status.Sequence, resourceVersion: read.ResourceVersion}
	s.stale.Store(false)
	w.done(s, nil)
}

// process writes a loop's newest waiting status; a failure is tried again
// later, with whatever is newest then.
func (w *statusWriter) process(s *statusSlot) {
	s.writing.Lock()
	defer s.writing.Unlock()
	s.mu.Lock()
	p := s.pending
	s.sending = p
	s.mu.Unlock()
	failed := false
	defer func() { w.sent(s, p, failed) }()
	if p == nil || s.gone.Load() || s.stale.Load() {
		w.done(s, nil)
		return
	}
	if p.quiet && s.released.Load() {
		w.done(s, p)
		return
	}
	if w.stopping.Err() != nil {
		w.drop(s)
		return
	}
	ctx, cancel := context.WithTimeout(w.stopping, statusWriteTimeout)
	defer cancel()
	err := w.write(ctx, p.loop, s.written, p.status)
	switch {
	case err == nil:
		s.written = s.written.next(p.status)
		w.done(s, p)
		return
	case apierrors.IsNotFound(err):
		w.done(s, p)
		return
	case errors.Is(err, errStale):
		w.log.Info("status not written: another runner wrote it since; the loop is read again", "loop", p.loop.Namespace+"/"+p.loop.Name)
		w.refused(s, err)
		return
	}
	if w.stopping.Err() != nil {
		w.drop(s)
		return
	}
	w.log.Error(err, "writing status", "loop", p.loop.Namespace+"/"+p.loop.Name)
	failed = true
	if !w.draining.Load() {
		w.queue.AddRateLimited(s)
	}
}

// sent ends the write of p: if it failed, a status handed over since holds
// p, not written (it is not quiet if p was not).
func (w *statusWriter) sent(s *statusSlot, p *pendingStatus, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sending = nil
	if failed && !p.quiet && s.pending != nil && s.pending != p {
		s.pending.quiet = false
	}
}

// drop gives up a slot's waiting status, once drain's time is up.
func (w *statusWriter) drop(s *statusSlot) {
	w.dropped.Add(1)
	w.done(s, nil)
}

// done says a slot's status p is written (or dropped), and the slot has
// nothing left to write unless a newer one came meanwhile; p nil: whatever
// is waiting.
func (w *statusWriter) done(s *statusSlot, p *pendingStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil || s.pending == p {
		s.pending = nil
		delete(w.waiting, s)
	}
	w.queue.Forget(s)
}
