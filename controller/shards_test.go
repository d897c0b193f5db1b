package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/shard"
)

// fakeShard is this replica as member "me", live or not, and the members
// it takes for live.
type fakeShard struct {
	mu   sync.Mutex
	self shard.Owner
	ok   bool
	live map[string]int64 // member → epoch
	// unreadable is how many MayTake calls fail, as a read of a
	// member's Lease that times out.
	unreadable int
	// saidNo is when Self first said this replica may not act since it
	// lapsed.
	saidNo time.Time
	// next is the member loops are handed on to; none when nil.
	next *shard.Owner
	// elsewhere assigns every loop to another replica.
	elsewhere bool
	// gaveAway is, by member, the epoch under which the member published a
	// view that gives every loop to another (shard.ViewAnnotation).
	gaveAway map[string]int64
	// written is, by member, the ViewWritten of its view.
	written map[string]string
	// answering, when set, runs before Owns returns what it found: the
	// listing may change meanwhile.
	answering func()
}

// Owns is true while the replica may act, as shard.Member's, unless loops
// are assigned elsewhere.
func (f *fakeShard) Owns(string) bool {
	f.mu.Lock()
	owns, answering := f.ok && !f.elsewhere, f.answering
	f.mu.Unlock()
	if answering != nil {
		answering()
	}
	return owns
}
func (f *fakeShard) Self() (shard.Owner, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ok && f.saidNo.IsZero() {
		f.saidNo = time.Now()
	}
	return f.self, f.ok
}
func (f *fakeShard) MayTake(_ context.Context, o *shard.Owner) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unreadable > 0 {
		f.unreadable--
		return false, apierrors.NewTimeoutError("reading the Lease", 1)
	}
	if o == nil || o.Member == f.self.Member {
		return true, nil
	}
	e, ok := f.live[o.Member]
	return !ok || e != o.Epoch, nil
}
func (f *fakeShard) HeldElsewhere(_ string, o *shard.Owner) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o == nil || o.Member == f.self.Member {
		return false
	}
	e, ok := f.live[o.Member]
	return ok && e == o.Epoch && !f.gaveAwayLocked(o)
}
func (f *fakeShard) Listed() time.Time { return time.Now() }
func (f *fakeShard) ViewWritten(o *shard.Owner) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o == nil || !f.gaveAwayLocked(o) {
		return ""
	}
	return f.written[o.Member]
}
func (f *fakeShard) Free(_ string, o *shard.Owner) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o == nil || o.Member == "" {
		return true
	}
	if o.Member == f.self.Member {
		return o.Epoch < f.self.Epoch
	}
	e, ok := f.live[o.Member]
	return ok && (e > o.Epoch || f.gaveAwayLocked(o)) // a newer epoch live: its runners of o's stopped
}
func (f *fakeShard) gaveAwayLocked(o *shard.Owner) bool {
	e, ok := f.gaveAway[o.Member]
	return ok && e == o.Epoch
}
func (f *fakeShard) Successor(string) (shard.Owner, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next == nil {
		return shard.Owner{}, false
	}
	return *f.next, true
}
func (f *fakeShard) lapse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ok, f.saidNo = false, time.Time{}
}

// renew makes the replica live again under epoch.
func (f *fakeShard) renew(epoch int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ok, f.self.Epoch = true, epoch
}

// refused is when a runner first found the replica lapsed; zero until then.
func (f *fakeShard) refused() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saidNo
}

// lapseDuring is a metric source that lapses its shard during the tick that
// makes its call number at: after the tick began, before its status is
// handed over.
type lapseDuring struct {
	shard *fakeShard
	calls atomic.Int32
	at    int32
}

func (m *lapseDuring) Metrics(context.Context, *v1alpha1.ControlLoop, time.Time) map[string]collectors.Metric {
	if m.calls.Add(1) == m.at {
		m.shard.lapse()
	}
	return nil
}

// startSharded starts Loops as a replica of s; see startLoopsWith.
func startSharded(t *testing.T, s Sharding, loops ...*v1alpha1.ControlLoop) *loopsEnv {
	t.Helper()
	return startLoopsWith(t, func(l *Loops) { l.Shard = s }, loops...)
}

// A sharded runner records its replica as the loop's owner with its
// ticks. Stopped with its replica (SIGTERM), it hands the loop on to the
// member it goes to next, keeping its ticks; given away by a rebalance, it
// writes nothing more: the loop's new owner takes it by the view the
// rebalance publishes, and claims it with its first write.
func TestShardedRunnerRecordsAndReleasesOwner(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 3}, ok: true, next: &shard.Owner{Member: "next", Epoch: 2}}
	e := startSharded(t, s, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 3 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 3}, e.status(t, key).Owner)
	e.stop()
	st := e.status(t, key)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "next", Epoch: 2}, st.Owner, "a runner stopped with its replica did not hand its loop on")
	assert.Positive(t, st.Tick, "the handover keeps the ticks")

	given := quietLoop(t, "api", "api-uid", 20*time.Millisecond)
	key = client.ObjectKeyFromObject(given)
	e = startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.StatusFlush = time.Hour // quiet ticks are not written
	}, given)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 1 }, 10*time.Second, 10*time.Millisecond)
	written := e.status(t, key)
	time.Sleep(100 * time.Millisecond) // quiet ticks, not written
	e.l.Release(key)
	assert.False(t, e.registered(key))
	assert.Equal(t, written, e.status(t, key), "a runner given away wrote its quiet ticks, or handed the loop on")
}

// A runner handed a loop takes it without a claim (even after its claim
// was refused while the old owner ran it), unless this replica took it
// before under its epoch (its own writes may name it in a lagging cache):
// then it claims it.
func TestShardedRunnerHandsOnAndTakesAHandedLoop(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "old", Epoch: 1}
	loop.Status.Sequence = 4
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"old": 1, "next": 3}}
	var claims atomic.Int32
	handedBefore, claimedBefore := countedClaims("handed"), countedClaims("claimed")
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		countClaims(l, &claims)
	}, loop)
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond, "a loop of a live other owner was run")
	handOn := func(to *v1alpha1.LoopOwner) { // as the owner's last write
		var l v1alpha1.ControlLoop
		require.NoError(t, e.c.Get(context.Background(), key, &l))
		l.Status.Owner = to
		l.Status.Sequence++
		require.NoError(t, e.c.Status().Update(context.Background(), &l))
	}
	handOn(&v1alpha1.LoopOwner{Member: "me", Epoch: 1})
	e.l.Keep(key)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, claims.Load(), "a loop handed on was claimed")
	assert.Equal(t, 1.0, countedClaims("handed")-handedBefore)

	e.l.Release(key) // given away

	// The loop comes back under this replica's epoch: this replica took
	// it under that epoch before, so it claims it.
	handOn(&v1alpha1.LoopOwner{Member: "me", Epoch: 1})
	tick := e.status(t, key).Tick
	e.l.Keep(key)
	require.Eventually(t, func() bool { return e.status(t, key).Tick > tick }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, int32(1), claims.Load(), "a loop this replica took before under its epoch was not claimed")
	assert.Equal(t, claimedBefore+1, countedClaims("claimed"))
}

// A rebalance gives a loop away without writing its quiet ticks, and does
// not wait for what its runner had handed over already (an acting or a
// failing tick's status: the member's next renewal follows the rebalance);
// rebalances meanwhile write nothing more, and the runner goes once that
// write has landed.
func TestRebalanceReleasesInTheBackground(t *testing.T) {
	e, key, sharded, writes, land := tickThenGiveAway(t, failingLoop(t, "web", "web-uid", 20*time.Millisecond), func(*Loops) {})
	require.Eventually(t, func() bool { return writes.Load() == 1 }, 10*time.Second, 10*time.Millisecond, "a failing tick's status was not written")
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for range 3 {
			sharded.rebalance(context.Background())
		}
	}()
	require.Eventually(t, func() bool {
		select {
		case <-returned:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "a rebalance waited for the write of a loop it gave away")
	assert.True(t, e.registered(key), "the runner was unregistered before its last write landed")
	land()
	sharded.handoff.Wait()
	assert.False(t, e.registered(key))
	assert.Equal(t, int32(1), writes.Load(), "a status was written after the runner was given away")
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, e.status(t, key).Owner, "the loop was handed on")
}

// A runner given away leaves its write in flight landed, and the quiet
// ticks it handed over since unwritten: its loop's new owner need not
// wait for them (they are in no history, as those never handed over).
func TestReleaseWaitsForTheWriteInFlightNotForQuietTicks(t *testing.T) {
	e, key, _, writes, land := tickThenGiveAway(t, quietLoop(t, "web", "web-uid", 10*time.Millisecond), func(l *Loops) {
		l.StatusFlush = 10 * time.Millisecond
	})
	require.Eventually(t, func() bool { return writes.Load() == 1 }, 10*time.Second, 10*time.Millisecond, "no quiet status written")
	held := e.status(t, key).Tick
	time.Sleep(100 * time.Millisecond) // quiet ticks handed over meanwhile, waiting
	released := make(chan struct{})
	go func() { e.l.Release(key); close(released) }()
	select {
	case <-released:
		t.Fatal("Release returned before the write in flight landed")
	case <-time.After(200 * time.Millisecond):
	}
	land()
	<-released
	assert.Greater(t, e.status(t, key).Tick, held, "the write in flight did not land")
	assert.Equal(t, int32(1), writes.Load(), "a released runner's quiet ticks were written")
	assert.False(t, e.registered(key))
}

// failingLoop is a loop whose every decision is rejected (it names a target
// the loop does not have): each tick's status is written at once.
func failingLoop(t *testing.T, name string, uid types.UID, interval time.Duration) *v1alpha1.ControlLoop {
	t.Helper()
	l := echoLoop(t, `{"actions": [{"target": "nope", "set": {"replicas": 1}}]}`)
	l.Name, l.UID = name, uid
	l.Spec.Targets, l.Spec.Collectors = nil, nil
	l.Spec.Interval = metav1.Duration{Duration: interval}
	return l
}

// assertTicksFollowOn checks that a status's history holds the ticks
// before (the previous owner's), and tick numbers with no gap or repeat.
func assertTicksFollowOn(t *testing.T, st v1alpha1.ControlLoopStatus, what string, before ...int64) {
	t.Helper()
	ticks := ticksOf(st)
	assert.Subset(t, ticks, before, what)
	for i := 1; i < len(ticks); i++ {
		assert.Equal(t, ticks[i-1]+1, ticks[i], "tick numbers %v", ticks)
	}
}

// holdWrites holds l's status writes (not its claims) while blocking is
// set, until landing closes, counting them in held.
func holdWrites(l *Loops, blocking *atomic.Bool, held *atomic.Int32, landing <-chan struct{}) {
	l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if !isClaim(obj) && blocking.Load() {
				held.Add(1)
				<-landing
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
}

// tickThenGiveAway runs loop as member "me" of a shard (configure adds to
// its Loops) until it ticked, then gives it away as giveAway does, its
// status writes counted in writes and held until land.
func tickThenGiveAway(t *testing.T, loop *v1alpha1.ControlLoop, configure func(*Loops)) (e *loopsEnv, key client.ObjectKey, sharded *shardedLoops, writes *atomic.Int32, land func()) {
	t.Helper()
	key = client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, next: &shard.Owner{Member: "next", Epoch: 2}}
	landing := make(chan struct{})
	writes = &atomic.Int32{}
	var blocking atomic.Bool
	e = startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		configure(l)
		holdWrites(l, &blocking, writes, landing)
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 1 }, 10*time.Second, 10*time.Millisecond)
	sharded, land = giveAway(t, e, s, &blocking, landing)
	return e, key, sharded, writes, land
}

// giveAway assigns every loop elsewhere, its status writes held from now on
// (blocking) until land closes landing, and returns the replica's sharded
// loops as member "me" to rebalance.
func giveAway(t *testing.T, e *loopsEnv, s *fakeShard, blocking *atomic.Bool, landing chan struct{}) (*shardedLoops, func()) {
	t.Helper()
	blocking.Store(true)
	s.mu.Lock()
	s.elsewhere = true
	s.mu.Unlock()
	var landed sync.Once
	land := func() { landed.Do(func() { close(landing) }) }
	t.Cleanup(land)
	return &shardedLoops{loops: e.l, member: &shard.Member{Name: "me"}}, land
}

// A member's renewals go on while a rebalance is held up: run after each
// renewal, a rebalance that outlasted the Lease cost the replica its
// epoch.
func TestRenewalsDoNotWaitForARebalance(t *testing.T) {
	sch := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(sch))
	require.NoError(t, v1alpha1.AddToScheme(sch))
	c := fake.NewClientBuilder().WithScheme(sch).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()
	var listed atomic.Int32
	held := interceptor.NewClient(c, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			// The first listing is the member's, before it joins; the
			// next, the first rebalance's, is held.
			if _, ok := list.(*v1alpha1.ControlLoopList); ok && listed.Add(1) > 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			return c.List(ctx, list, opts...)
		},
	})
	member := shard.NewMember(c, "gov", "me", shard.Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 20 * time.Millisecond}, logr.Discard())
	l := &Loops{Client: held, APIReader: held, Bundles: echoRegistry(t), Log: logr.Discard(), Shard: member}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = (&shardedLoops{loops: l, member: member}).Start(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	require.Eventually(t, func() bool { return listed.Load() == 2 }, 5*time.Second, 10*time.Millisecond, "no rebalance")
	renewed := func() time.Time {
		var lease coordinationv1.Lease
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: "gov", Name: shard.LeasePrefix + "me"}, &lease))
		return lease.Spec.RenewTime.Time
	}
	first := renewed()
	require.Eventually(t, func() bool { return renewed().After(first) }, 5*time.Second, 10*time.Millisecond, "the Lease was not renewed while a rebalance was held up")
	_, ok := member.Self()
	assert.True(t, ok)
}

// A replica joins the members (takes its member Lease) only once its cache
// holds the loops: joined first, the others stopped its share's runners
// while it could not run them.
func TestMemberJoinsOnceItsLoopsAreCached(t *testing.T) {
	sch := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(sch))
	require.NoError(t, v1alpha1.AddToScheme(sch))
	c := fake.NewClientBuilder().WithScheme(sch).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()
	syncing, synced := make(chan struct{}, 1), make(chan struct{})
	cache := interceptor.NewClient(c, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*v1alpha1.ControlLoopList); ok {
				select {
				case syncing <- struct{}{}:
				default:
				}
				select { // as a cache that has not synced yet
				case <-synced:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return c.List(ctx, list, opts...)
		},
	})
	member := shard.NewMember(c, "gov", "me", shard.Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 20 * time.Millisecond}, logr.Discard())
	l := &Loops{Client: cache, APIReader: cache, Bundles: echoRegistry(t), Log: logr.Discard(), Shard: member}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = (&shardedLoops{loops: l, member: member}).Start(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	<-syncing
	time.Sleep(100 * time.Millisecond) // five retry periods
	lease := client.ObjectKey{Namespace: "gov", Name: shard.LeasePrefix + "me"}
	err := c.Get(ctx, lease, &coordinationv1.Lease{})
	require.True(t, apierrors.IsNotFound(err), "the member Lease was taken before the loops were cached (%v)", err)
	close(synced)
	require.Eventually(t, func() bool { _, ok := member.Self(); return ok }, 5*time.Second, 10*time.Millisecond, "no Lease once the loops were cached")
}

// A rebalance giving a share away writes what its runners had handed over
// (failing ticks' statuses here) a bounded number at a time (each in a
// takeover turn, besides the status writer's own workers: twice the bound
// at most), however many it releases together. Sent all at once (3,345
// handovers when a replica came back among 10,000 loops: BenchmarkShards)
// they swamped a busy API server.
func TestRebalanceReleasesAFewAtATime(t *testing.T) {
	const bound, n = 2, 12
	loops := make([]*v1alpha1.ControlLoop, n)
	for i := range loops {
		loops[i] = failingLoop(t, fmt.Sprintf("loop-%d", i), types.UID(fmt.Sprintf("uid-%d", i)), 20*time.Millisecond)
	}
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, next: &shard.Owner{Member: "next", Epoch: 2}}
	var (
		blocking      atomic.Bool
		mu            sync.Mutex
		inFlight, top int
	)
	landing := make(chan struct{})
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.StatusWriteConcurrency = bound
		l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if !isClaim(obj) && blocking.Load() {
					mu.Lock()
					inFlight++
					top = max(top, inFlight)
					mu.Unlock()
					<-landing
					mu.Lock()
					inFlight--
					mu.Unlock()
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
	}, loops...)
	for _, loop := range loops {
		require.Eventually(t, func() bool { return e.status(t, client.ObjectKeyFromObject(loop)).Tick >= 1 }, 10*time.Second, 10*time.Millisecond, loop.Name)
	}
	sharded, land := giveAway(t, e, s, &blocking, landing)
	writing := func() int {
		mu.Lock()
		defer mu.Unlock()
		return inFlight
	}
	require.Eventually(t, func() bool { return writing() >= bound }, 10*time.Second, 10*time.Millisecond, "the failing ticks' writes")
	time.Sleep(100 * time.Millisecond) // the other loops' statuses wait
	sharded.rebalance(context.Background())
	require.Never(t, func() bool { return writing() > 2*bound }, 300*time.Millisecond, 10*time.Millisecond, "releases written all at once")
	land()
	sharded.handoff.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.LessOrEqual(t, top, 2*bound, "status writes in flight at once")
}

// A runner the reconciler starts, on an answer of the listing before a
// rebalance's, is seen and stopped by that rebalance before it publishes
// its view: a replica runs no loop its published view gives away.
func TestRebalanceStopsARunnerTheReconcilerStartsMeanwhile(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true}
	e := startSharded(t, s)
	require.NoError(t, e.c.Create(context.Background(), loop)) // no runner yet
	asked, answer := make(chan struct{}), make(chan struct{})
	s.mu.Lock()
	s.answering = func() {
		s.mu.Lock()
		s.answering, s.elsewhere = nil, true // the next listing assigns the loop elsewhere
		s.mu.Unlock()
		close(asked)
		<-answer
	}
	s.mu.Unlock()
	reconciled := make(chan error, 1)
	go func() {
		_, err := (&Reconciler{Loops: e.l}).Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
		reconciled <- err
	}()
	<-asked
	rebalanced := make(chan struct{})
	go func() {
		(&shardedLoops{loops: e.l, member: &shard.Member{Name: "me"}}).rebalance(context.Background())
		close(rebalanced)
	}()
	select {
	case <-rebalanced: // it did not wait for the reconciler
	case <-time.After(200 * time.Millisecond):
	}
	close(answer)
	require.NoError(t, <-reconciled)
	<-rebalanced
	require.Eventually(t, func() bool { return !e.registered(key) }, 5*time.Second, 10*time.Millisecond,
		"a runner the reconciler started during a rebalance that gave its loop away still runs after it")
}

// Neither a rebalance nor the reconciler starts a runner for a loop
// assigned to this replica that another live replica still runs (it would
// be refused, after every renewal); once that replica is gone, it does.
func TestRebalanceLeavesALoopItsOwnerStillRuns(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "other", Epoch: 1}
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"other": 1}}
	e := startSharded(t, s, loop)
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond, "the first runner was not refused")
	refused := countedClaims("refused")
	sharded := &shardedLoops{loops: e.l, member: &shard.Member{Name: "me"}}
	for range 3 {
		sharded.rebalance(context.Background())
		assert.False(t, e.registered(key), "a runner was started for a loop another live replica runs")
		// Nor by the reconciler (the cache's first events, a push).
		_, err := (&Reconciler{Loops: e.l}).Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
		require.NoError(t, err)
		assert.False(t, e.registered(key), "the reconciler started a runner for a loop another live replica runs")
	}
	assert.Equal(t, refused, countedClaims("refused"))

	s.mu.Lock()
	delete(s.live, "other")
	s.mu.Unlock()
	sharded.rebalance(context.Background())
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "me", e.status(t, key).Owner.Member)
}

// A loop recorded as run by another live replica is not ticked: its runner
// leaves at once, writing nothing; once that replica is gone, it is taken.
func TestShardedRunnerLeavesALoopOwnedElsewhere(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "other", Epoch: 1}
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"other": 1}}
	refused, claimed, deferredClaims := countedClaims("refused"), countedClaims("claimed"), countedClaims(deferred)
	e := startSharded(t, s, loop)
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond)
	st := e.status(t, key)
	assert.Zero(t, st.Tick)
	assert.Equal(t, "other", st.Owner.Member)
	assert.Equal(t, 1.0, countedClaims("refused")-refused, "the refused claim is not counted")
	assert.Equal(t, claimed, countedClaims("claimed"))

	s.mu.Lock()
	s.live["other"] = 2 // came back under a new epoch: its runner of epoch 1 stopped
	s.mu.Unlock()
	e.l.Keep(key)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "me", e.status(t, key).Owner.Member)
	assert.Equal(t, claimed, countedClaims("claimed"), "a loop free to take was claimed before its first tick")
	assert.Equal(t, deferredClaims+1, countedClaims(deferred), "the deferred claim is not counted")
}

// countedClaims is how many claims governor_shard_claims_total counts with
// result.
func countedClaims(result string) float64 {
	var m dto.Metric
	if err := shardClaims.WithLabelValues(result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// takeovers is how many takeovers governor_shard_takeover_seconds observed.
func takeovers(t *testing.T) uint64 {
	var m dto.Metric
	require.NoError(t, shardTakeoverSeconds.Write(&m))
	return m.GetHistogram().GetSampleCount()
}

// countClaims counts in n the claims l makes.
func countClaims(l *Loops, n *atomic.Int32) {
	l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if isClaim(obj) {
				n.Add(1)
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
}

// isClaim says whether a status patch is a claim: a write of a tick's
// status (writeStatus) sends the loop's metadata alone, and reads back no
// more; a claim reads back the whole loop.
func isClaim(obj client.Object) bool {
	_, ok := obj.(*v1alpha1.ControlLoop)
	return ok
}

// A claim that fails without another live owner (a conflict with a status
// write of this replica's own, a timeout, a Lease that could not be read)
// is tried again: the loop is not left without a runner. Each failure
// here stopped the runner for good. A conflict is met at once by a read
// of the API server and a second claim, within the takeover.
func TestShardedRunnerTriesAFailedClaimAgain(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "gone", Epoch: 1} // MayTake reads its Lease
	key := client.ObjectKeyFromObject(loop)
	var claims, reads atomic.Int32
	conflict := apierrors.NewConflict(schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "controlloops"}, loop.Name, nil)
	failures := []error{conflict, conflict, apierrors.NewTimeoutError("the claim", 1)}
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, unreadable: 1}
	failed, taken := countedClaims("failed"), takeovers(t)
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.APIReader = interceptor.NewClient(l.APIReader.(client.WithWatch), interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				reads.Add(1)
				return c.Get(ctx, k, obj, opts...)
			},
		})
		l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if !isClaim(obj) {
					return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
				}
				if n := int(claims.Add(1)) - 1; n < len(failures) {
					return failures[n]
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "me", e.status(t, key).Owner.Member)
	assert.Equal(t, int32(len(failures)+1), claims.Load(), "the failed claims were not made again")
	assert.Equal(t, int32(1), reads.Load(), "the conflict with the cached loop is not met by a read of the API server (the second, with the loop read from it, fails the takeover)")
	assert.Equal(t, 3.0, countedClaims("failed")-failed, "the unread Lease, the conflict met twice and the timeout are not counted as failed")
	assert.Equal(t, uint64(4), takeovers(t)-taken, "each takeover's time is not observed")
}

// A cache that lags behind a runner's claim (it shows the loop's previous
// owner, at a lower status.sequence) says nothing new: the runner ticks on
// without asking the API server, which it does once the cache, as new as
// the claim, names another owner.
func TestShardedRunnerTrustsItsClaimOverAnOlderCache(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "gone", Epoch: 1}
	loop.Status.Sequence = 5
	key := client.ObjectKeyFromObject(loop)
	var lagging atomic.Bool
	lagging.Store(true)
	var reads atomic.Int32
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true}
		api := l.Client.(client.WithWatch)
		l.APIReader = interceptor.NewClient(api, interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				reads.Add(1)
				return c.Get(ctx, k, obj, opts...)
			},
		})
		l.Client = interceptor.NewClient(api, interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if err := c.Get(ctx, k, obj, opts...); err != nil {
					return err
				}
				if cl, ok := obj.(*v1alpha1.ControlLoop); ok && lagging.Load() {
					cl.Status.Owner = &v1alpha1.LoopOwner{Member: "gone", Epoch: 1}
					cl.Status.Sequence = 5 // as before the claim
				}
				return nil
			},
		})
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 5 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, reads.Load(), "the runner read the API server for a cache older than its claim")
	assert.Equal(t, "me", e.status(t, key).Owner.Member)

	// Another replica claims it: the cache, now as new, names it.
	lagging.Store(false)
	var fresh v1alpha1.ControlLoop
	require.NoError(t, e.c.Get(context.Background(), key, &fresh))
	fresh.Status.Owner = &v1alpha1.LoopOwner{Member: "other", Epoch: 1}
	fresh.Status.Sequence++
	require.NoError(t, e.c.Status().Update(context.Background(), &fresh))
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond,
		"the runner went on while a cache as new as its claim named another owner")
	assert.Positive(t, reads.Load(), "the runner stopped without asking the API server")
}

// A replica whose Lease lapsed holds its runners: they tick no more and
// write nothing, not even the tick that was running, nor on stop (another
// replica may own the loop by then). Renewed under the same epoch, they go
// on without taking their loops again, and the held tick's status is
// written at once; renewed under a new epoch, they take them anew (free:
// their old epoch ended), the first status written at once claiming them.
func TestShardedRunnerWaitsOutALapse(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true}
	taken := func() float64 { return countedClaims(deferred) }
	before := taken()
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.Metrics = &lapseDuring{shard: s, at: 3}
		l.StatusFlush = time.Hour // quiet ticks are not written: only urgent or owed ones
	}, loop)
	e.l.mu.Lock()
	runner := e.l.runners[key]
	e.l.mu.Unlock()

	require.Eventually(t, func() bool { return !s.refused().IsZero() }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // five intervals
	st := e.status(t, key)
	assert.Less(t, st.Tick, int64(3), "the tick during which the Lease lapsed was written")
	for _, h := range st.History {
		assert.True(t, h.Time.Time.Before(s.refused()), "tick %d started after the runner found the Lease lapsed", h.Tick)
	}
	assert.True(t, e.registered(key), "a lapse stopped the runner")
	// A push meanwhile (the reconciler) must not stop it either.
	_, err := (&Reconciler{Loops: e.l}).Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	require.NoError(t, err)
	assert.True(t, e.registered(key), "the reconciler stopped a runner while its replica's Lease lapsed")

	s.renew(1)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 4 }, 10*time.Second, 10*time.Millisecond,
		"the status owed since the lapse was not written with the next tick")
	assert.Contains(t, ticksOf(e.status(t, key)), int64(3), "the held tick's entry was lost")
	assert.Equal(t, before+1, taken(), "a renewal under the same epoch took the loop again")

	s.lapse()
	s.renew(2)
	require.Eventually(t, func() bool { return e.status(t, key).Owner.Epoch == 2 }, 10*time.Second, 10*time.Millisecond,
		"a runner did not claim its loop under the new epoch")
	assert.Equal(t, before+2, taken())
	e.l.mu.Lock()
	assert.Same(t, runner, e.l.runners[key], "the runner was replaced: lapses stopped it")
	e.l.mu.Unlock()

	s.lapse()
	require.Eventually(t, func() bool { return !s.refused().IsZero() }, 10*time.Second, 10*time.Millisecond)
	held := e.status(t, key)
	e.stop()
	after := e.status(t, key)
	assert.Equal(t, held.Tick, after.Tick, "a lapsed replica wrote a status on stop")
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 2}, after.Owner, "a lapsed replica must not clear the owner: another may have taken it")
}

func ticksOf(st v1alpha1.ControlLoopStatus) []int64 {
	out := make([]int64, len(st.History))
	for i, h := range st.History {
		out[i] = h.Tick
	}
	return out
}

// A loop handed on by its owner reaches the reconciler: to this replica,
// or to none (its assignee claims it at once); a claim by this replica, or
// another's, and the ticks do not.
func TestHandedOnPassesOnlyAHandover(t *testing.T) {
	owned := func(o *v1alpha1.LoopOwner, tick int64) *v1alpha1.ControlLoop {
		return &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Status: v1alpha1.ControlLoopStatus{Owner: o, Tick: tick}}
	}
	me := &v1alpha1.LoopOwner{Member: "me", Epoch: 2}
	meBefore := &v1alpha1.LoopOwner{Member: "me", Epoch: 1}
	other := &v1alpha1.LoopOwner{Member: "other", Epoch: 1}
	third := &v1alpha1.LoopOwner{Member: "third", Epoch: 1}
	l := &Loops{Shard: &fakeShard{self: shard.Owner{Member: "me", Epoch: 2}, ok: true}}
	handedOn := (&Reconciler{Loops: l}).handedOn()
	cases := []struct {
		name     string
		old, cur *v1alpha1.ControlLoop
		want     bool
	}{
		{"handed on to none", owned(other, 3), owned(nil, 3), true},
		{"handed on to me", owned(other, 3), owned(me, 3), true},
		{"my earlier epoch's, handed on to me", owned(meBefore, 3), owned(me, 3), true},
		{"handed on to another", owned(other, 3), owned(third, 3), false},
		{"ticked", owned(me, 3), owned(me, 4), false},
		{"claimed from none", owned(nil, 3), owned(me, 3), false},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, handedOn.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.cur}), tc.name)
	}
	l.tookUnder(types.NamespacedName{Namespace: "ns", Name: "web"}, 2)
	assert.False(t, handedOn.Update(event.UpdateEvent{ObjectOld: owned(other, 3), ObjectNew: owned(me, 3)}), "my own claim passed")
	unsharded := (&Reconciler{Loops: &Loops{}}).handedOn()
	assert.False(t, unsharded.Update(event.UpdateEvent{ObjectOld: owned(other, 3), ObjectNew: owned(nil, 3)}), "unsharded, an owner cleared passed")
}

// A loop whose recorded owner's epoch ended is taken without a claim: its
// runner ticks at once, and the first status write, conditional on the
// sequence it read, claims it. When the dead owner's last write lands
// first, that write is refused, nothing the runner ticked meanwhile is
// written, and it takes the loop again from what landed: no tick number
// twice in the history.
func TestShardedRunnerDefersTheClaimOfAFreeLoop(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status = v1alpha1.ControlLoopStatus{Tick: 5, Sequence: 9, Owner: &v1alpha1.LoopOwner{Member: "gone", Epoch: 1},
		History: []v1alpha1.HistoryEntry{{Tick: 5, Time: metav1.NewMicroTime(time.Now().Add(-10 * time.Second))}}}
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"gone": 2}} // epoch 1 ended
	claims, deferredClaims := countedClaims("claimed"), countedClaims(deferred)
	var first, lateLanded atomic.Bool
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if !first.Swap(true) { // the dead owner's last tick lands just before the runner's first write
					var late v1alpha1.ControlLoop
					require.NoError(t, c.Get(ctx, key, &late))
					late.Status.Tick, late.Status.Sequence = 6, 10
					late.Status.History = append(late.Status.History, v1alpha1.HistoryEntry{Tick: 6, Time: metav1.NewMicroTime(time.Now().Add(-5 * time.Second))})
					require.NoError(t, c.Status().Update(ctx, &late))
					lateLanded.Store(true)
				}
				return asAPIServer(c.SubResource(sub).Patch(ctx, obj, patch, opts...), obj)
			},
		})
	}, loop)
	require.Eventually(t, func() bool { st := e.status(t, key); return st.Owner.Member == "me" && st.Tick >= 9 }, 10*time.Second, 10*time.Millisecond)
	require.True(t, lateLanded.Load())
	st := e.status(t, key)
	assertTicksFollowOn(t, st, "the dead owner's ticks", 5, 6)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, st.Owner)
	assert.Equal(t, claims, countedClaims("claimed"), "a free loop was claimed before it ticked")
	assert.Equal(t, deferredClaims+2, countedClaims(deferred), "taken, refused, taken again")
}

// A loop its live owner gave away by its published view is taken at once,
// its claim deferred; when the owner's handover lands before that first
// write (which is refused), the runner takes the loop as handed to it,
// with no claim (no write of its own names it), at once: not an interval
// later.
func TestShardedRunnerTakesAHandoverThatBeatItsDeferredClaim(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", time.Hour)
	loop.Status = v1alpha1.ControlLoopStatus{Tick: 5, Sequence: 9, Owner: &v1alpha1.LoopOwner{Member: "old", Epoch: 1},
		History: []v1alpha1.HistoryEntry{{Tick: 5, Time: metav1.NewMicroTime(time.Now().Add(-10 * time.Second))}}}
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"old": 1}, gaveAway: map[string]int64{"old": 1}}
	claims, handedOn, deferredClaims := countedClaims("claimed"), countedClaims(handed), countedClaims(deferred)
	var first, handoverLanded atomic.Bool
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if !first.Swap(true) { // the old owner's handover, with its last quiet tick, lands first
					var last v1alpha1.ControlLoop
					require.NoError(t, c.Get(ctx, key, &last))
					last.Status.Tick, last.Status.Sequence = 6, 10
					last.Status.Owner = &v1alpha1.LoopOwner{Member: "me", Epoch: 1}
					last.Status.History = append(last.Status.History, v1alpha1.HistoryEntry{Tick: 6, Time: metav1.NewMicroTime(time.Now().Add(-5 * time.Second))})
					require.NoError(t, c.Status().Update(ctx, &last))
					handoverLanded.Store(true)
				}
				return asAPIServer(c.SubResource(sub).Patch(ctx, obj, patch, opts...), obj)
			},
		})
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 7 }, 10*time.Second, 10*time.Millisecond, "the runner did not take the loop again when its write was refused")
	require.True(t, handoverLanded.Load())
	st := e.status(t, key)
	assertTicksFollowOn(t, st, "the old owner's ticks", 5, 6)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, st.Owner)
	assert.Equal(t, deferredClaims+1, countedClaims(deferred), "the loop given away was not taken at once")
	assert.Equal(t, handedOn+1, countedClaims(handed), "the handover was not taken as one")
	assert.Equal(t, claims, countedClaims("claimed"), "a loop handed on was claimed")
}

// A runner whose deferred claim was refused as stale reads its loop again
// from the API server, not its cache: the cache may not have the write
// that refused the claim yet (a dead owner's last, landing late), and a
// claim on what it holds would be refused again, as long as it lags.
func TestShardedRunnerReadsTheAPIServerAfterAStaleRefusal(t *testing.T) {
	cached := quietLoop(t, "web", "web-uid", time.Hour)
	cached.Status = v1alpha1.ControlLoopStatus{Tick: 5, Sequence: 9, Owner: &v1alpha1.LoopOwner{Member: "old", Epoch: 1}}
	landed := cached.DeepCopy() // the old owner's last write
	landed.Status.Tick, landed.Status.Sequence = 6, 10
	key := client.ObjectKeyFromObject(cached)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"old": 2}} // epoch 1 ended
	deferredClaims := countedClaims(deferred)
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.Client = laggingCache(l.Client.(client.WithWatch), cached)
	}, landed)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 7 }, 10*time.Second, 10*time.Millisecond, "the runner's claims were refused on what its cache holds")
	st := e.status(t, key)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, st.Owner)
	assert.Equal(t, int64(7), st.Tick, "the runner's first tick after the old owner's last")
	assert.Equal(t, deferredClaims+2, countedClaims(deferred), "taken once on the cache, refused, and once on the API server")
}

// A loop a live owner's published view gave away is taken as the cache
// holds it only if a listing of the loops' versions, sent once the view was
// seen, says the API server holds the same: the old owner's last writes
// landed before its view, which the Lease watch brings sooner than the
// cache gets them, and a first write on what the cache holds would be
// refused (BenchmarkShards, run L: 17 of 136 loops of a join).
func TestShardedRunnerTakesALoopAViewGaveAwayAsTheAPIServerHasIt(t *testing.T) {
	for _, lagging := range []bool{true, false} {
		t.Run(fmt.Sprintf("cache lagging=%v", lagging), func(t *testing.T) {
			loop := quietLoop(t, "web", "web-uid", time.Hour)
			loop.Status = v1alpha1.ControlLoopStatus{Tick: 6, Sequence: 10, Owner: &v1alpha1.LoopOwner{Member: "old", Epoch: 1}}
			cached := loop.DeepCopy() // before the old owner's last write
			cached.Status.Tick, cached.Status.Sequence, cached.ResourceVersion = 5, 9, "1"
			key := client.ObjectKeyFromObject(loop)
			s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"old": 1}, gaveAway: map[string]int64{"old": 1}}
			deferredClaims := countedClaims(deferred)
			var reads atomic.Int32
			e := startLoopsWith(t, func(l *Loops) {
				l.Shard = s
				api := l.Client.(client.WithWatch)
				l.APIReader = interceptor.NewClient(api, interceptor.Funcs{
					Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
						reads.Add(1)
						return c.Get(ctx, k, obj, opts...)
					},
				})
				if lagging {
					l.Client = laggingCache(api, cached)
				}
			}, loop)
			require.Eventually(t, func() bool { return e.status(t, key).Tick >= 7 }, 10*time.Second, 10*time.Millisecond, "the runner's first write was refused")
			st := e.status(t, key)
			assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, st.Owner)
			assert.Equal(t, int64(7), st.Tick, "the runner's first tick after the old owner's last")
			assert.Equal(t, deferredClaims+1, countedClaims(deferred), "its first write was refused: taken twice")
			if !lagging {
				assert.Zero(t, reads.Load(), "a loop the cache held as the API server does was read from the API server")
			}
		})
	}
}

// A loop a live owner's published view gave away is taken as the cache
// holds it, without a listing, once the cache has seen the version the view
// names (its old owner's writes had landed by it); a cache that does not
// see it within cacheCatchUp falls back to the listing.
func TestShardedRunnerTakesALoopAsCachedOnceTheCacheSawTheViewsVersion(t *testing.T) {
	for _, c := range []struct {
		name       string
		catchUp    time.Duration // when the cache sees the view's version; 0: never
		wantListed int32
	}{
		{"seen", time.Nanosecond, 0},
		{"seen later", 300 * time.Millisecond, 0},
		{"never seen", 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			loop := quietLoop(t, "web", "web-uid", time.Hour)
			loop.Status = v1alpha1.ControlLoopStatus{Tick: 6, Sequence: 10, Owner: &v1alpha1.LoopOwner{Member: "old", Epoch: 1}}
			key := client.ObjectKeyFromObject(loop)
			s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"old": 1},
				gaveAway: map[string]int64{"old": 1}, written: map[string]string{"old": "5000"}}
			started := time.Now()
			var listed atomic.Int32
			e := startLoopsWith(t, func(l *Loops) {
				l.Shard = s
				l.APIReader = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
					List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
						listed.Add(1)
						return c.List(ctx, list, opts...)
					},
				})
				l.CacheVersion = func() string {
					if c.catchUp > 0 && time.Since(started) >= c.catchUp {
						return "5000"
					}
					return "4999"
				}
			}, loop)
			require.Eventually(t, func() bool { return e.status(t, key).Tick >= 7 }, 10*time.Second, 10*time.Millisecond, "the loop was not taken")
			assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, e.status(t, key).Owner)
			assert.Equal(t, c.wantListed, listed.Load(), "listings of the loops' versions")
			if c.catchUp > time.Nanosecond {
				assert.GreaterOrEqual(t, e.status(t, key).LastTick.Sub(started), c.catchUp, "taken before the cache saw the view's version")
			}
		})
	}
}

// laggingCache is api as a cache that holds cached of its loop and does not
// catch up, and answers a failed JSON patch test as the API server does.
func laggingCache(api client.WithWatch, cached *v1alpha1.ControlLoop) client.WithWatch {
	key := client.ObjectKeyFromObject(cached)
	return interceptor.NewClient(api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if loop, ok := obj.(*v1alpha1.ControlLoop); ok && k == key {
				cached.DeepCopyInto(loop)
				return nil
			}
			return c.Get(ctx, k, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return asAPIServer(c.SubResource(sub).Patch(ctx, obj, patch, opts...), obj)
		},
	})
}

// asAPIServer is a fake client's answer to a JSON patch as the API server
// gives it: a failed test is 422 Invalid there, a plain error here.
func asAPIServer(err error, obj client.Object) error {
	if err != nil && strings.Contains(err.Error(), "test failed") {
		return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("ControlLoop").GroupKind(), obj.GetName(), nil)
	}
	return err
}

// holdTicks is a metric source whose calls, once hold is set, wait until
// release closes, ignoring their context: a tick that takes its time.
type holdTicks struct {
	hold    atomic.Bool
	held    chan struct{} // receives when a call starts waiting
	release chan struct{}
}

func (m *holdTicks) Metrics(context.Context, *v1alpha1.ControlLoop, time.Time) map[string]collectors.Metric {
	if m.hold.Load() {
		m.held <- struct{}{}
		<-m.release
	}
	return nil
}

// A rebalance publishes the view it gave loops away under
// (shard.ViewAnnotation: their new owners then take them at once) only
// once the runners of those loops have stopped and what they had handed
// over is written: a write landing after a new owner read the loop would
// refuse that owner's first (BenchmarkShards, run L).
func TestRebalancePublishesItsViewOnceItsRunnersStoppedAndTheirWritesLanded(t *testing.T) {
	loop := failingLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, next: &shard.Owner{Member: "next", Epoch: 2}}
	ticks := &holdTicks{held: make(chan struct{}, 1), release: make(chan struct{})}
	var blocking atomic.Bool
	var blocked atomic.Int32
	landing := make(chan struct{})
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.StatusFlush = time.Hour
		l.Metrics = ticks
		holdWrites(l, &blocking, &blocked, landing)
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 1 }, 10*time.Second, 10*time.Millisecond)

	sch := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(sch))
	leases := fake.NewClientBuilder().WithScheme(sch).Build()
	member := shard.NewMember(leases, "gov", "me", shard.Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 20 * time.Millisecond}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	renewing := make(chan struct{})
	go func() { _ = member.Run(ctx, nil); close(renewing) }()
	t.Cleanup(func() { cancel(); <-renewing })
	require.Eventually(t, func() bool { return len(member.Members()) == 1 }, 5*time.Second, 10*time.Millisecond)
	published := func() string {
		var l coordinationv1.Lease
		require.NoError(t, leases.Get(ctx, client.ObjectKey{Namespace: "gov", Name: shard.LeasePrefix + "me"}, &l))
		return l.Annotations[shard.ViewAnnotation]
	}

	var released sync.Once
	releaseTicks := func() {
		released.Do(func() {
			ticks.hold.Store(false)
			close(ticks.release)
		})
	}
	blocking.Store(true)
	require.Eventually(t, func() bool { return blocked.Load() > 0 }, 5*time.Second, 10*time.Millisecond, "no status write held")
	ticks.hold.Store(true)
	<-ticks.held // the runner is in a tick
	s.mu.Lock()
	s.elsewhere = true
	s.mu.Unlock()
	sharded := &shardedLoops{loops: e.l, member: member}
	var landed sync.Once
	t.Cleanup(func() {
		releaseTicks()
		landed.Do(func() { close(landing) })
		sharded.handoff.Wait()
	})
	rebalanced := make(chan struct{})
	go func() { sharded.rebalance(ctx); close(rebalanced) }()
	require.Never(t, func() bool { return published() != "" }, 300*time.Millisecond, 20*time.Millisecond, "the view was published while a runner of a loop it gives away still ticked")

	releaseTicks()
	require.Eventually(t, func() bool {
		select {
		case <-rebalanced:
			return true
		default:
			return false
		}
	}, 5*time.Second, 10*time.Millisecond, "the rebalance waited for the runner's stop or its write")
	select {
	case <-e.l.stopped(key):
	case <-time.After(5 * time.Second):
		t.Fatal("the runner of a loop the rebalance gave away did not stop")
	}
	require.Never(t, func() bool { return published() != "" }, 300*time.Millisecond, 20*time.Millisecond, "the view was published before the write the runner had handed over landed")
	assert.True(t, e.registered(key), "the runner's last write landed though it was held: the test proves nothing")
	landed.Do(func() { close(landing) })
	require.Eventually(t, func() bool { return published() == "1:me" }, 5*time.Second, 10*time.Millisecond, "the view was not published once the write landed")
	var l coordinationv1.Lease
	require.NoError(t, leases.Get(ctx, client.ObjectKey{Namespace: "gov", Name: shard.LeasePrefix + "me"}, &l))
	var last v1alpha1.ControlLoop
	require.NoError(t, e.l.APIReader.Get(ctx, key, &last))
	assert.Equal(t, last.ResourceVersion, l.Annotations[shard.ViewWrittenAnnotation], "the view does not name the version its last write landed at")
}

// A loop recorded as this replica's, which it has no runner for and is not
// assigned, is disowned (its owner cleared, for its assignee), unless the
// view this replica published gives it away: its assignee takes it as it
// is, and a write here landed before that assignee's claim and refused it
// (BenchmarkShards: every loop of a join taken twice).
func TestRebalanceDisownsOnlyWhatItsViewDoesNotGiveAway(t *testing.T) {
	var uid string
	for _, u := range []string{"u-0", "u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "u-7"} {
		if shard.Assign(u, []string{"me", "other"}) == "other" {
			uid = u
			break
		}
	}
	require.NotEmpty(t, uid)
	loop := quietLoop(t, "web", types.UID(uid), time.Hour)
	loop.Status.Owner, loop.Status.Sequence = &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, 3
	key := client.ObjectKeyFromObject(loop)
	sch := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(sch))
	require.NoError(t, v1alpha1.AddToScheme(sch))
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(loop).WithStatusSubresource(&v1alpha1.ControlLoop{}).Build()
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, elsewhere: true}
	l := &Loops{Client: c, APIReader: c, Bundles: echoRegistry(t), Log: logr.Discard(), Shard: s}
	member := shard.NewMember(c, "gov", "me", shard.Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 20 * time.Millisecond}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	renewing := make(chan struct{})
	go func() { _ = member.Run(ctx, nil); close(renewing) }()
	t.Cleanup(func() { cancel(); <-renewing })
	require.Eventually(t, func() bool { _, ok := member.Self(); return ok }, 5*time.Second, 10*time.Millisecond)
	owner := func() *v1alpha1.LoopOwner {
		var got v1alpha1.ControlLoop
		require.NoError(t, c.Get(ctx, key, &got))
		return got.Status.Owner
	}
	sharded := &shardedLoops{loops: l, member: member}

	member.Publish([]string{"me", "other"}, "")
	sharded.rebalance(ctx)
	sharded.handoff.Wait()
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 1}, owner(), "a loop the published view gives away was written")

	member.Publish([]string{"me"}, "") // a view that gives it to this replica: not given away
	sharded.rebalance(ctx)
	sharded.handoff.Wait()
	assert.Nil(t, owner(), "a loop not given away by the view was not disowned")
}

// A rebalance logs, once the runners it stopped have, how long they had
// gone without a tick when it began: a moved loop's wait for its new owner
// is that plus the handoff, which its status.history (quiet ticks written
// every flush interval) does not show. BenchmarkShards reads it.
func TestRebalanceLogsHowLongItsStoppedRunnersWentWithoutATick(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", time.Hour)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, next: &shard.Owner{Member: "next", Epoch: 2}}
	var mu sync.Mutex
	var logged []map[string]any
	log := funcr.NewJSON(func(obj string) {
		var line map[string]any
		if json.Unmarshal([]byte(obj), &line) == nil {
			mu.Lock()
			logged = append(logged, line)
			mu.Unlock()
		}
	}, funcr.Options{})
	e := startLoopsWith(t, func(l *Loops) { l.Shard = s; l.Log = log }, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 1 }, 10*time.Second, 10*time.Millisecond)
	const quiet = 300 * time.Millisecond
	time.Sleep(quiet) // the runner's next tick is an hour away
	s.mu.Lock()
	s.elsewhere = true
	s.mu.Unlock()
	sharded := &shardedLoops{loops: e.l, member: &shard.Member{Name: "me"}}
	sharded.rebalance(context.Background())
	sharded.handoff.Wait()

	mu.Lock()
	defer mu.Unlock()
	var idle []float64
	for _, line := range logged {
		if line["msg"] == "rebalanced" {
			assert.Equal(t, float64(1), line["stopped"])
			idle = append(idle, line["idle"].(float64))
		}
	}
	require.Len(t, idle, 1, "one rebalance stopped a runner: %v", logged)
	assert.GreaterOrEqual(t, idle[0], quiet.Seconds(), "less than the time since the runner's last tick")
	assert.Less(t, idle[0], time.Minute.Seconds(), "not since the runner's last tick")
}

// stopped (for tests) is closed once the runner of a loop has stopped (at once when it
// has none).
func (l *Loops) stopped(key types.NamespacedName) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.runners[key]; ok && r.cancel != nil {
		return r.done
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}
