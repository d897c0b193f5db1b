// Package controller runs ControlLoops: a reconciler that keeps one runner
// per loop, and the runners, which tick at their loop's interval, decide
// through the loop's bundle, guard the decision, act, and record it all in
// the loop's status.
package controller

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
	"governor.dev/governor/internal/warmstack"
)

// The controller's permissions on its own resource and for its events; the
// actuators declare theirs. What is read through the manager's cache needs
// list and watch, not get; get is for what is read from the API server
// itself (a runner's first read of its loop, scale subresources, push
// tokens). TestLeastPrivilege checks that every verb is needed.
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops,verbs=get;list;watch
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// retryAfter is how long a runner waits after failing to read or write its loop.
const retryAfter = time.Second

// defaultStatusFlush is how often a runner writes the status of ticks that
// changed nothing and met no refusal, unless Loops.StatusFlush says: every
// tick that acts, fails or draws the guard's notes is written at once.
const defaultStatusFlush = time.Second

// Loops runs one runner per ControlLoop. It is a manager Runnable that
// needs leader election: only the leader ticks.
type Loops struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads from the API server itself: a runner's first read of
	// its loop's status, so a restarted controller goes on from it (sharded,
	// the claim's condition checks the cache's instead, and a cache that
	// lagged is read again from here).
	APIReader client.Reader
	Bundles   *bundles.Registry
	// Metrics fill input.metrics; status.observations alone when nil.
	Metrics MetricSource
	// Scope is what loops' collectors may observe; a loop whose collectors
	// reach outside it collects nothing and fails its ticks.
	Scope collectors.Scope
	// Actuators read and change targets; Governor's own (builtin) when nil.
	Actuators *actuators.Registry
	// StatusFlush is how often quiet ticks (no change, no refusal, no
	// failure) are written to the status; 1s when zero. Longer trades the
	// freshness of lastTick, history and policy state for API load.
	StatusFlush time.Duration
	// StatusWriteConcurrency bounds the status writes in flight
	// (DefaultStatusWriteConcurrency when zero): they are made off the
	// ticks' path, each loop's newest status once. It bounds the loops
	// taken over at once too (each read afresh and claimed).
	StatusWriteConcurrency int
	// MaxStatusBytes bounds each loop's status as JSON; the oldest history
	// entries go first (DefaultMaxStatusBytes when zero).
	MaxStatusBytes int
	Recorder       recorder.EventRecorder
	Log            logr.Logger
	// Shard, when loops are sharded across replicas, says which this
	// replica runs; nil runs every loop (the leader's).
	Shard Sharding
	// CacheVersion, when set, is the resourceVersion of the loops that
	// Client's cache has seen ("" when it cannot say).
	CacheVersion func() string
	// Cache, when set, is the cache Client reads: ticks read their
	// targets' workloads from its stores, without a copy.
	Cache cache.Cache

	// assigning is held by a rebalance's scan of the loops, and shared
	// by the reconciler's start of a runner (ensureAssigned).
	assigning sync.RWMutex
	mu        sync.Mutex
	ctx       context.Context // set once started
	runners   map[types.NamespacedName]*runner
	workloads *WorkloadStores // of Cache; nil without
	// took is, sharded, the member Lease epoch under which this replica
	// last took each loop (handedOrClaimed).
	took map[types.NamespacedName]int64

	writerOnce sync.Once
	writer     *statusWriter
	// takeovers holds a turn per runner reading and claiming its loop:
	// set when started.
	takeovers chan struct{}
	// versions tell whether the cache holds a loop as the API server does.
	versions listedVersions
	// written is the highest resourceVersion a status write landed at.
	written landedVersion
}

type runner struct {
	key    types.NamespacedName
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	// status is the loop's status as this runner knows it: the cache may lag
	// behind it, and a stale view of cooldowns or history must never drive
	// an action.
	status *v1alpha1.ControlLoopStatus
	// handed is the status last handed to the status writer (or written),
	// and when; status differs from it while a quiet tick waits for the
	// flush interval.
	handed   *v1alpha1.ControlLoopStatus
	handedAt time.Time
	// owed is set when a tick's status was not handed over because this
	// replica could not tell whether the loop was still its own: the next
	// tick's is written at once, whatever it did (the one before may have
	// acted, and its cooldown must survive a crash).
	owed bool
	// decided is the input of the last decision whose status.lastInput
	// status does not hold yet: it is encoded when the status is handed
	// over (most quiet ticks' statuses never are).
	decided map[string]any
	// docs are the targets' documents of the last tick, kept while the
	// targets read the same.
	docs targetDocs
	// log names the loop; made once (a logger with values encodes them when
	// made: at every tick it was 4 % of what a thousand loops allocated).
	log logr.Logger
	// claimed is the status.sequence this replica's claim of the loop
	// wrote: a cached loop below it was read before the claim.
	claimed int64
	// tookBefore is, while the runner's deferred claim may not have
	// landed, what this replica had recorded of taking the loop before
	// (Loops.took): restored if the claim is refused (deferredRefused).
	tookBefore *int64
	// givenAway is set when a rebalance gave the loop to another replica:
	// the stopping runner hands over nothing more (Release).
	givenAway atomic.Bool
	// out is the loop's status on its way to the API server.
	out  statusSlot
	loop *v1alpha1.ControlLoop // the loop as last read, for a final write
	// minInterval is the loop's: woken runners wait for it since the last tick.
	minInterval time.Duration
	// actBy is when the actions of the tick acting must be done (its
	// intent's lastChange and changesLand).
	actBy time.Time
	// telemetry is the loop's series on /metrics.
	telemetry *loopTelemetry
	// stagger is where in each period the loop's ticks and quiet status
	// writes fall (staggerOf).
	stagger float64
	// ticked is the time the last tick recorded (after reading the loop,
	// and taking it over): the next is no sooner than minInterval after it.
	ticked time.Time
}

// Start runs the loops until ctx ends, and returns once their last
// statuses are written.
func (l *Loops) Start(ctx context.Context) error {
	writer := l.writes()
	writer.start(cmp.Or(l.StatusWriteConcurrency, DefaultStatusWriteConcurrency))
	l.mu.Lock()
	l.takeovers = make(chan struct{}, cmp.Or(l.StatusWriteConcurrency, DefaultStatusWriteConcurrency))
	l.ctx = ctx
	if l.Cache != nil {
		l.workloads = NewWorkloadStores(l.Cache)
	}
	for _, r := range l.runners {
		l.startLocked(r)
	}
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	runners := l.runners
	l.runners = nil
	for _, r := range runners {
		r.telemetry.forget() // a replica that no longer leads shows no loops
	}
	l.mu.Unlock()
	for _, r := range runners {
		if r.cancel != nil {
			r.cancel()
		}
	}
	for _, r := range runners {
		if r.cancel != nil {
			<-r.done
		}
	}
	// The runners have handed their last statuses over: written before the
	// manager hands the Lease back, or dropped if the API server is too
	// slow for that.
	writer.drain(statusDrainTimeout)
	return nil
}

// writes is the loops' status writer.
func (l *Loops) writes() *statusWriter {
	l.writerOnce.Do(func() { l.writer = newStatusWriter(l.writeStatus, l.Log.WithName("status")) })
	return l.writer
}

// Ensure makes sure a loop has a runner, and wakes it to tick now: its spec
// changed.
func (l *Loops) Ensure(key types.NamespacedName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runners == nil {
		if l.ctx != nil && l.ctx.Err() != nil {
			return // stopping
		}
		l.runners = map[types.NamespacedName]*runner{}
	}
	if r, ok := l.runners[key]; ok {
		select {
		case r.wake <- struct{}{}:
		default:
		}
		return
	}
	r := l.newRunner(key)
	l.runners[key] = r
	if l.ctx != nil {
		l.startLocked(r)
	}
}

// Remove stops a loop's runner, if it has one.
func (l *Loops) Remove(key types.NamespacedName) {
	l.mu.Lock()
	r, ok := l.runners[key]
	delete(l.runners, key)
	delete(l.took, key)
	if ok {
		r.telemetry.forget() // under l.mu: before a runner made again for the key records anything
	}
	l.mu.Unlock()
	if ok {
		r.out.gone.Store(true)
	}
	if ok && r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

func (l *Loops) newRunner(key types.NamespacedName) *runner {
	r := &runner{key: key, wake: make(chan struct{}, 1), done: make(chan struct{}), telemetry: newLoopTelemetry(key.Namespace, key.Name), stagger: staggerOf(key), docs: targetDocs{}}
	r.log = l.Log.WithValues("loop", key)
	r.out.wake = r.wake
	return r
}

func (l *Loops) startLocked(r *runner) {
	ctx, cancel := context.WithCancel(l.ctx)
	r.cancel = cancel
	go l.run(ctx, r)
}

func (l *Loops) run(ctx context.Context, r *runner) {
	defer close(r.done)
	defer l.flush(r)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time // when the last tick started
	due := time.Now()  // when the next tick is
	woken := false     // the next tick is for a wake
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.wake:
			// A new observation or spec: tick now, but no sooner than
			// minInterval after the last tick. Wakes meanwhile coalesce.
			stopTimer(timer)
			woken = true
			soonest := latest(last, r.ticked).Add(r.minInterval)
			if wait := time.Until(soonest); wait > 0 {
				timer.Reset(wait)
				due = soonest
				continue
			}
		}
		last = time.Now()
		r.telemetry.lagged(last.Sub(due))
		next, ok := l.offRunnerStack(ctx, r, tickStart{at: last, woken: woken})
		woken = false
		if !ok && l.exit(ctx, r) {
			return
		}
		due = last.Add(next)
		timer.Reset(max(next-time.Since(last), 0))
	}
}

// exit unregisters a runner whose loop is gone, so that a loop created
// again under the same name gets a runner of its own. It says false when
// the runner must go on instead: it was woken (Ensure) meanwhile.
func (l *Loops) exit(ctx context.Context, r *runner) bool {
	if ctx.Err() != nil {
		return true // stopped by Remove or Start: they unregister it
	}
	r.out.gone.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-r.wake:
		// Ensure saw the loop after this tick missed it: a loop created
		// again, or the cache catching up. Wakes are sent under l.mu, so
		// none is lost between this check and the delete below.
		r.wake <- struct{}{}
		r.out.gone.Store(false)
		return false
	default:
	}
	if l.runners[r.key] == r {
		delete(l.runners, r.key)
		r.telemetry.forget()
	}
	return true
}

// tickStacks are the goroutines ticks run on when one is idle: a tick goes
// deep (OPA evaluates by recursion), and a goroutine that ticked before has
// the stack for it, where a fresh one grows it by copying, several times
// over (warmstack).
var tickStacks = warmstack.New(max(16, 8*runtime.GOMAXPROCS(0)))

// offRunnerStack runs a tick on one of tickStacks when one is idle, else
// on a goroutine of its own, whose stack goes when the tick ends; never on
// the runner's goroutine. A runner spends almost all its time waiting:
// ticking on its own goroutine, each of a thousand runners kept a deep
// stack between its ticks (BenchmarkScale, 1,000 loops: 135 MiB of stacks,
// a quarter of governor's memory under the manifest's limit).
func (l *Loops) offRunnerStack(ctx context.Context, r *runner, started tickStart) (next time.Duration, ok bool) {
	done := make(chan struct{})
	once := func() {
		defer close(done)
		next, ok = l.guardedOnce(ctx, r, started)
	}
	if !tickStacks.TryRun(once) {
		go once()
	}
	<-done
	return next, ok
}

// guardedOnce is once, with a panic outside the tick (recording, writing)
// logged, counted and retried: one loop's bug must not stop the others or
// crash the controller.
func (l *Loops) guardedOnce(ctx context.Context, r *runner, started tickStart) (next time.Duration, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			r.telemetry.panicked()
			l.Log.Error(fmt.Errorf("panic: %v", p), "runner panicked", "loop", r.key, "stack", string(debug.Stack()))
			next, ok = retryAfter, true
		}
	}()
	return l.once(ctx, r, started)
}

// reportPanic logs, with its stack, a panic that ended a tick (the loop's
// telemetry counts it).
func reportPanic(log logr.Logger, res tickResult) {
	if res.panicked != "" {
		log.Error(fmt.Errorf("panic: %s", res.panicked), "tick panicked", "stack", string(res.stack))
	}
}

// stopTimer stops a timer and drains a tick it may have sent.
func stopTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

// once runs one tick of a runner's loop, started as started says, and
// says how long after its start the next is due; false when the loop is
// gone.
func (l *Loops) once(ctx context.Context, r *runner, started tickStart) (time.Duration, bool) {
	log := r.log
	var cached v1alpha1.ControlLoop
	if err := l.Client.Get(ctx, r.key, &cached, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return 0, false
		}
		log.Error(err, "reading loop")
		return retryAfter, true
	}
	loop := ticking(&cached)
	if loop.DeletionTimestamp != nil {
		return 0, false
	}
	l.reclaim(r)
	if next, ok, stop := l.mayAct(ctx, r, &loop, "not ticking"); stop {
		return next, ok
	}
	interval := cmp.Or(loop.Spec.Interval.Duration, defaultInterval)
	r.minInterval = minIntervalOf(&loop.Spec)
	if err := l.catchUp(ctx, r, &loop); err != nil {
		return caughtUpFailed(log, err)
	}
	r.loop = &loop
	if wait := l.handoverWait(r); wait > 0 {
		return wait, true
	}
	var next *v1alpha1.ControlLoopStatus
	var res tickResult
	ticked := time.Now()
	r.ticked = ticked
	if loop.Spec.State == v1alpha1.Paused {
		if r.status.Phase == v1alpha1.PhasePaused && r.status.ObservedGeneration == loop.Generation {
			r.telemetry.phaseIs(v1alpha1.PhasePaused)
			return r.untilNextTick(started, ticked, time.Time{}, interval), true
		}
		next = paused(&loop, r.status)
	} else {
		res = tick(ctx, clusterWorld{l: l, r: r, reads: &tickReader{Reader: l.Client, namespace: loop.Namespace, workloads: l.workloads}}, l.Bundles, &loop, r.status, ticked, false, r.docs)
		reportPanic(log, res)
		if (res.interrupted || ctx.Err() != nil) && !res.wrote() {
			// Cut by shutdown, lost leadership or the loop's removal before
			// it changed anything: dropped, not recorded (no history, phase,
			// condition or event), as if it had not started.
			return 0, false
		}
		var err error
		if next, err = record(&loop, r.status, res, l.MaxStatusBytes); err != nil {
			log.Error(err, "recording tick")
			return retryAfter, true
		}
	}
	r.status = next
	switch {
	case res.probe != nil:
		r.decided = res.probe.Input
	case loop.Spec.Policy.Revision != "":
		r.decided = nil
	}
	r.telemetry.ticked(&loop, res, next)
	l.emit(&loop, res)
	if ctx.Err() != nil {
		return 0, false // what the tick changed is written by flush, if still ours
	}
	if next, ok, stop := l.mayAct(ctx, r, &loop, "not writing the tick's status"); stop {
		// Written with the next tick's, if the loop is still ours.
		r.owed = true
		return next, ok
	}
	l.save(r, &loop, res, interval)
	return r.untilNextTick(started, ticked, res.cooldownEnds, interval), true
}

// untilNextTick is how long after a tick's start the loop ticks again
// (nextTick).
func (r *runner) untilNextTick(started tickStart, ticked, cooldownEnds time.Time, interval time.Duration) time.Duration {
	return nextTick(started, ticked, cooldownEnds, interval, r.minInterval, r.stagger).Sub(started.at)
}

// ticking is the loop as a tick reads it: a copy of the cache's object
// (the tick may change it) without what the runner keeps itself (the
// history and the last decision's input: r.status; the gate's probes read
// the API server's) and what nothing reads (managed fields). A deep copy
// of the whole loop at every tick was a tenth of the allocations of 1,000
// loops, and copying lastInput a third of what was left of it.
func ticking(cached *v1alpha1.ControlLoop) v1alpha1.ControlLoop {
	c := *cached // shares everything with the cache: only its own fields are set
	c.ManagedFields = nil
	c.Status.History = nil
	c.Status.LastInput = nil
	return *c.DeepCopy()
}

// mayAct is acting as once uses it: stop says the runner must not go on
// with this tick, and next and ok are then once's answer (retry, or stop
// for good).
func (l *Loops) mayAct(ctx context.Context, r *runner, loop *v1alpha1.ControlLoop, why string) (next time.Duration, ok, stop bool) {
	acting, err := l.acting(ctx, r, loop)
	switch {
	case err != nil:
		if !errors.Is(err, errLapsed) { // the member logs why
			l.Log.Error(err, why, "loop", r.key)
		}
		return retryAfter, true, true
	case !acting:
		return 0, false, true
	}
	return 0, true, false
}

// catchUp brings a runner up to its loop as read for a tick: the status
// the API server holds on the runner's first tick (or when the loop was
// deleted and created again: nothing of the old one's cooldowns, history or
// state belongs to the new one), and the observations of collectors removed
// since it last read the loop pruned.
func (l *Loops) catchUp(ctx context.Context, r *runner, loop *v1alpha1.ControlLoop) error {
	if r.loop != nil && r.loop.UID != loop.UID {
		r.status, r.handed, r.handedAt = nil, nil, time.Time{}
	}
	if r.status == nil || r.out.stale.Load() {
		l.deferredRefused(r)
		var fresh v1alpha1.ControlLoop
		var deferredTo *v1alpha1.LoopOwner
		if l.Shard != nil {
			var err error
			if deferredTo, err = l.take(ctx, r, &fresh); err != nil {
				return err
			}
			r.claimed = fresh.Status.Sequence
		} else if err := l.readInTurn(ctx, r.key, &fresh); err != nil {
			return err
		}
		r.status = fresh.Status.DeepCopy()
		r.handed, r.decided = r.status, nil
		l.writes().reset(&r.out, &fresh)
		if deferredTo != nil {
			// Claimed by the first write, which moves the sequence on (a
			// cache behind it still names the old owner, and says nothing
			// new): the first tick's status, written at once.
			r.status = r.status.DeepCopy()
			r.status.Owner = deferredTo
			r.claimed++
			r.owed = true
		}
		r.status = takenOver(r.status, time.Now())
	}
	if gone := removedCollectors(r.loop, loop); len(gone) > 0 {
		return pruneObservations(ctx, l.Client, loop, gone)
	}
	return nil
}

// readInTurn reads a loop from the API server in a takeover turn.
func (l *Loops) readInTurn(ctx context.Context, key types.NamespacedName, loop *v1alpha1.ControlLoop) error {
	done, err := l.takeoverTurn(ctx)
	if err != nil {
		return err
	}
	defer done()
	return l.APIReader.Get(ctx, key, loop)
}

// takeoverTurn waits for a turn to read and claim a loop, and returns the
// function that ends it. Every runner does it at once when a replica
// starts or takes its share back: a thousand reads of loops with their
// histories and a thousand claims sent together made every request of a
// saturated API server slow, the member Lease's renewal too, and the
// replica lost it again.
func (l *Loops) takeoverTurn(ctx context.Context) (func(), error) {
	l.mu.Lock()
	turns := l.takeovers
	l.mu.Unlock()
	if turns == nil {
		return func() {}, nil
	}
	select {
	case turns <- struct{}{}:
		return func() { <-turns }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// takenOver is a status as read by a runner that takes its loop over at a
// time: a target changed less than changesLand before counts as changed
// then. The runner before may have died acting, and its change land after
// the lastChange its intent recorded: the cooldown must hold from the
// change, not from the intent.
func takenOver(st *v1alpha1.ControlLoopStatus, at time.Time) *v1alpha1.ControlLoopStatus {
	out := st
	for i, t := range st.Targets {
		if t.LastChange == nil || at.Sub(t.LastChange.Time) >= changesLand || !t.LastChange.Time.Before(at) {
			continue
		}
		if out == st {
			out = st.DeepCopy()
		}
		out.Targets[i].LastChange = ptr.To(metav1.NewMicroTime(at))
	}
	return out
}

// save hands the runner's status to the status writer when the tick needs
// it written now. A quiet tick waits for the loop's next slot of the flush
// interval (flushDue), unless the next tick is further away than the flush
// interval: nothing would hand it over in time.
func (l *Loops) save(r *runner, loop *v1alpha1.ControlLoop, res tickResult, interval time.Duration) {
	flush := cmp.Or(l.StatusFlush, defaultStatusFlush)
	quiet := !r.owed && !urgent(res, r.handed, r.status)
	if quiet && time.Now().Before(flushDue(r.handedAt, flush, r.stagger)) && interval < flush {
		return
	}
	l.handOver(r, loop, quiet)
	r.handedAt, r.owed = time.Now(), false
}

// handOver gives the runner's status, not handed over yet, to the status
// writer, with the last decision's input; quiet: it adds only quiet ticks
// to the status handed over before.
func (l *Loops) handOver(r *runner, loop *v1alpha1.ControlLoop, quiet bool) {
	if r.decided != nil {
		withLastInput(r.status, r.decided, l.MaxStatusBytes)
		r.decided = nil
	}
	if quiet {
		l.writes().putQuiet(&r.out, loop, r.status)
	} else {
		l.writes().put(&r.out, loop, r.status)
	}
	r.handed = r.status
}

// urgent says whether a tick's status must be written now: it acted on a
// target or a supervised loop (its cooldown must survive a crash), failed,
// was refused or clamped, or the loop's phase or conditions changed.
func urgent(res tickResult, written, next *v1alpha1.ControlLoopStatus) bool {
	if len(res.entry.Applied) > 0 || res.entry.Params != nil || res.entry.Error != "" || len(res.entry.Guard) > 0 {
		return true
	}
	if written.Phase != next.Phase || written.ObservedGeneration != next.ObservedGeneration || len(written.Conditions) != len(next.Conditions) {
		return true
	}
	for i := range next.Conditions {
		w, n := written.Conditions[i], next.Conditions[i]
		if w.Type != n.Type || w.Status != n.Status || w.Reason != n.Reason || w.Message != n.Message {
			return true
		}
	}
	return false
}

// flush hands over what a stopping runner has not: Start writes it before
// it returns. A runner a rebalance gave away hands over nothing more
// (Release).
func (l *Loops) flush(r *runner) {
	if r.loop == nil || r.out.gone.Load() || r.givenAway.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if acting, err := l.acting(ctx, r, r.loop); !acting || err != nil {
		return // another replica may own it
	}
	l.released(r)
	if r.status == r.handed {
		return
	}
	l.handOver(r, r.loop, false)
}

// writeStatus writes the fields the runner owns, from base (what the API
// server holds) to next, on the condition that the API server still holds
// base: a JSON patch that tests status.sequence and moves it on by one (a
// merge patch with the resourceVersion read, for a status with no sequence
// yet). Fields others write (observations, overrides) are left as they
// are. The API server answers with the loop's metadata only: the rest
// would be encoded and decoded for nothing.
func (l *Loops) writeStatus(ctx context.Context, loop *v1alpha1.ControlLoop, base statusBase, next *v1alpha1.ControlLoopStatus) error {
	patch, err := statusPatch(base, next)
	if err != nil {
		return err
	}
	target := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ControlLoop"},
		ObjectMeta: metav1.ObjectMeta{Namespace: loop.Namespace, Name: loop.Name},
	}
	err = l.Client.Status().Patch(ctx, target, patch)
	// The test failed (422), or the resourceVersion moved (409).
	if apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		return errors.Join(errStale, err)
	}
	if err == nil {
		l.written.landed(target.ResourceVersion)
	}
	return err
}

// statusPatch is the patch of a loop from the owned status fields of base
// to next's, conditional on base (see writeStatus).
func statusPatch(base statusBase, next *v1alpha1.ControlLoopStatus) (client.Patch, error) {
	before, err := ownedFields(base.status)
	if err != nil {
		return nil, err
	}
	after, err := ownedFields(next)
	if err != nil {
		return nil, err
	}
	sequence, _ := json.Marshal(base.sequence + 1)
	if base.sequence == 0 {
		diff := map[string]json.RawMessage{"sequence": sequence}
		for name, value := range after {
			if !bytes.Equal(before[name], value) {
				diff[name] = value
			}
		}
		for name := range before {
			if _, kept := after[name]; !kept {
				diff[name] = json.RawMessage("null")
			}
		}
		raw, err := json.Marshal(map[string]any{"metadata": map[string]string{"resourceVersion": base.resourceVersion}, "status": diff})
		return client.RawPatch(types.MergePatchType, raw), err
	}
	type op struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value,omitempty"`
	}
	was, _ := json.Marshal(base.sequence)
	ops := []op{{"test", "/status/sequence", was}, {"replace", "/status/sequence", sequence}}
	for _, name := range slices.Sorted(maps.Keys(after)) {
		if !bytes.Equal(before[name], after[name]) {
			ops = append(ops, op{"add", "/status/" + name, after[name]})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if _, kept := after[name]; !kept {
			ops = append(ops, op{Op: "remove", Path: "/status/" + name})
		}
	}
	raw, err := json.Marshal(ops)
	return client.RawPatch(types.JSONPatchType, raw), err
}

// ownedFields are the fields of a status the runner owns (all but the
// sequence and those others write: observations, overrides), by name, as
// JSON.
func ownedFields(st *v1alpha1.ControlLoopStatus) (map[string]json.RawMessage, error) {
	if st == nil {
		return map[string]json.RawMessage{}, nil
	}
	own := *st
	own.Observations, own.Overrides, own.OverridesBy, own.Sequence = nil, nil, nil, 0
	raw, err := json.Marshal(own)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	return fields, json.Unmarshal(raw, &fields)
}

// emit records a tick's refusals, clamps, rejections and changes as Events
// on the loop.
func (l *Loops) emit(loop *v1alpha1.ControlLoop, res tickResult) {
	if l.Recorder == nil {
		return
	}
	// The Events regard the loop, not one version of it: the status written
	// each tick changes its resourceVersion, and Events that differ in it
	// are never one series, so a refusal repeated every tick would make a
	// new Event every tick.
	loop = &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: loop.Namespace, Name: loop.Name, UID: loop.UID}}
	for _, n := range res.notes {
		if n.Verdict == guard.Unchanged {
			continue
		}
		l.Recorder.Eventf(loop, nil, eventType(n.Verdict), string(n.Verdict), "Guard", "%s", n.String())
	}
	if res.entry.Error != "" {
		l.Recorder.Eventf(loop, nil, corev1.EventTypeWarning, "TickFailed", "Decide", "%s", res.entry.Error)
	}
	for _, a := range res.entry.Applied {
		l.Recorder.Eventf(loop, nil, corev1.EventTypeNormal, "Applied", "Actuate", "%s %s (%s)", a.Target, string(a.Set.Raw), a.Reason)
	}
}

// removedCollectors are the collectors the loop had as its runner last
// read it and no longer has, whose observations are still in its status.
func removedCollectors(before, now *v1alpha1.ControlLoop) []string {
	if before == nil || before.UID != now.UID {
		return nil
	}
	kept := map[string]bool{}
	for _, c := range now.Spec.Collectors {
		kept[c.Name] = true
	}
	var gone []string
	for _, c := range before.Spec.Collectors {
		if _, observed := now.Status.Observations[c.Name]; observed && !kept[c.Name] {
			gone = append(gone, c.Name)
		}
	}
	return gone
}

// pruneObservations removes the observations of collectors removed from
// the loop: a stale one left behind would hold its actions. Only those keys
// are removed (a merge patch setting them to null): a push arriving
// meanwhile is kept.
func pruneObservations(ctx context.Context, c client.Client, loop *v1alpha1.ControlLoop, names []string) error {
	gone := map[string]any{}
	for _, name := range names {
		gone[name] = nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observations": gone}})
	if err != nil {
		return err
	}
	if err := c.Status().Patch(ctx, loop.DeepCopy(), client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("pruning the observations of removed collectors %v: %w", names, err)
	}
	for _, name := range names {
		delete(loop.Status.Observations, name)
	}
	return nil
}
