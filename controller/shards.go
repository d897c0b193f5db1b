package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/shard"
)

// Sharding says which loops this replica runs when loops are sharded
// across replicas (shard.Member); Loops without one runs every loop.
type Sharding interface {
	// Owns says whether the loop of this UID is assigned to this replica.
	Owns(uid string) bool
	// Self is this replica as an owner; false while it must not act.
	Self() (shard.Owner, bool)
	// MayTake says whether a loop recorded as run by o may be taken.
	MayTake(ctx context.Context, o *shard.Owner) (bool, error)
	// HeldElsewhere says, without a request, whether o is another replica
	// live under its epoch as last seen, running the loop of this UID.
	HeldElsewhere(uid string, o *shard.Owner) bool
	// Free says, without a request, whether the loop of this UID, recorded
	// as run by o, may be taken with no claim written first: none is
	// recorded, o's epoch ended as last seen, or o published a view that
	// gives the loop to another.
	Free(uid string, o *shard.Owner) bool
	// Successor is the live member, other than this replica, the loop of
	// this UID goes to when this replica hands it on.
	Successor(uid string) (shard.Owner, bool)
	// Listed is when the last listing of the members was answered: a
	// request sent after it sees what that listing showed had landed.
	Listed() time.Time
	// ViewWritten is the resourceVersion of the loops by which the writes
	// of the runners o's view stopped had landed ("": not known).
	ViewWritten(o *shard.Owner) string
}

// errNotOwner stops a runner at once, without acting or writing: another
// replica runs its loop, or this one may no longer.
var errNotOwner = errors.New("loop owned by another replica")

// errLapsed holds a runner back, acting on nothing, while this replica
// could not renew its member Lease in time: renewed before it expires, the
// runner goes on with its claim; renewed later, under a new epoch, it reads
// and claims its loop again (reclaim). Either costs less than stopping
// every runner and starting them again (BenchmarkScale, 1,000 loops: each
// lapse of a saturated API server's replica took minutes to recover).
var errLapsed = errors.New("member Lease not renewed in time")

var shardLoops = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "governor_shard_loops",
	Help: "Loops this replica runs, by member (governor run --shards auto).",
}, []string{"member"})

// The claims of loops this replica made, and how long each took from
// asking for a takeover turn to its answer: where a failover's or a
// rebalance's time goes.
var (
	shardClaims = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_shard_claims_total",
		Help: "Loops this replica took, by result: claimed; handed (on to it by its owner as it stopped: no claim written); deferred (no owner recorded, its epoch ended, or its published view gives the loop away: ticked at once, claimed by its first status write); refused (another live replica owns the loop, or this one lapsed); failed (tried again).",
	}, []string{"result"})
	shardTakeoverSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "governor_shard_takeover_seconds",
		Help:    "Time from a runner's start of taking its loop (a takeover turn, a claim) to the answer, whatever the result.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5 ms to 10 s
	})
)

// claimResult is the result label of a claim that ended with err.
func claimResult(err error) string {
	switch {
	case err == nil:
		return claimed
	case errors.Is(err, errNotOwner), errors.Is(err, errLapsed):
		return refused
	}
	return failed
}

// The results of taking a loop (governor_shard_claims_total).
const (
	claimed = "claimed" // claimed by this replica
	handed  = "handed"  // handed on to this replica by its owner as it stopped
	// deferred: taken with no claim written, its first status write claims it
	deferred = "deferred"
	refused  = "refused"
	failed   = "failed"
)

func ownerOf(o *v1alpha1.LoopOwner) *shard.Owner {
	if o == nil {
		return nil
	}
	return &shard.Owner{Member: o.Member, Epoch: o.Epoch}
}

// lapsed says whether this replica, sharded, may not act now: its member
// Lease was not renewed in time.
func (l *Loops) lapsed() bool {
	if l.Shard == nil {
		return false
	}
	_, ok := l.Shard.Self()
	return !ok
}

// ensureAssigned makes sure a loop this replica runs has a runner (waking
// it), unless its owner still runs it elsewhere; false when the loop is
// not this replica's, for the caller to release. Which loops are is not
// known while the replica lapsed: true, and its runners wait (errLapsed)
// for the rebalance after its renewal to decide. A rebalance's scan waits
// for it (assigning): a runner started on an answer of the listing before
// the rebalance's would be left running, in a replica whose published view
// says it is stopped.
func (l *Loops) ensureAssigned(key types.NamespacedName, loop *v1alpha1.ControlLoop) bool {
	l.assigning.RLock()
	defer l.assigning.RUnlock()
	switch {
	case l.lapsed():
		return true
	case !l.owns(loop):
		return false
	case l.heldElsewhere(key, loop):
		// Its owner hands it on (an update this watches) or the listing
		// sees it gone (the rebalance): a runner started now is refused,
		// as one for each loop of a replica's share was, on the cache's
		// first events, when it came back (BenchmarkShards).
		return true
	}
	l.Ensure(key)
	return true
}

// owns says whether this replica runs the loop.
func (l *Loops) owns(loop *v1alpha1.ControlLoop) bool {
	return l.Shard == nil || l.Shard.Owns(string(loop.UID))
}

// take makes a runner's loop this replica's, and reads it into fresh: as
// handed on, claimed in a takeover turn, or free to take, its claim
// deferred to the runner's first status write (handedOrClaimed). It says
// the owner the runner records when the claim is deferred; nil when fresh
// names it already.
func (l *Loops) take(ctx context.Context, r *runner, fresh *v1alpha1.ControlLoop) (*v1alpha1.LoopOwner, error) {
	asked := time.Now()
	result, self, err := l.handedOrClaimed(ctx, r, fresh)
	shardClaims.WithLabelValues(result).Inc()
	shardTakeoverSeconds.Observe(time.Since(asked).Seconds())
	if result != deferred || err != nil {
		return nil, err
	}
	return &v1alpha1.LoopOwner{Member: self.Member, Epoch: self.Epoch}, nil
}

// handedOrClaimed is take's work, its result, and this replica as it took
// the loop. A loop whose cache names this replica, under its epoch, as
// owner, and which this replica has not taken under its epoch, was handed
// on to it by its previous owner as that one stopped (released), with
// status.sequence moved on: the cache holds what the API server does (no
// other replica writes while this one is the live owner, and the previous
// owner's writes after the handover are refused), and it is taken without
// a write. (A claim after each handover, on a busy API server, made a
// joining replica's first ticks of its share come seconds after its Lease:
// BenchmarkShards.) A loop this replica took before under its epoch may
// name it by this replica's own writes, which the cache can show after it
// handed the loop on: it is claimed. A loop free to take as the cache has
// it (no owner recorded, one whose epoch the last listing saw end, or one
// its live owner's view gives away) is taken without a write too, as the
// cache has it (one a view gave away, if a listing of the loops' versions
// says the cache holds it as the API server does, else as read from the
// API server: listedVersions): the runner's first status write,
// conditional on the cached status.sequence as a claim is, claims it, and
// until then the runner acts on nothing (an action's intent is that
// write). If another
// write lands first (the dead owner's last, late; another replica's claim),
// that write is refused and the runner reads the loop again, its ticks
// since unwritten (they acted on nothing). A failover's thousands of claims
// written one by one before the loops ticked again took 30 s at the median
// (BenchmarkShards, run H).
func (l *Loops) handedOrClaimed(ctx context.Context, r *runner, fresh *v1alpha1.ControlLoop) (string, shard.Owner, error) {
	self, ok := l.Shard.Self()
	if !ok {
		return refused, self, errLapsed
	}
	// After a write refused as stale, from the API server: the cache may
	// not have the write that refused it yet, and a claim on what it
	// holds would be refused again (a joining replica's first ticks of a
	// share, with the old owners' last quiet writes landing as it took
	// them, were refused twice on the average: BenchmarkShards).
	fromCache := !r.out.stale.Load()
	var reader client.Reader = l.Client
	if !fromCache {
		reader = l.APIReader
	}
	if err := reader.Get(ctx, r.key, fresh); err != nil {
		return failed, self, err
	}
	if fromCache && l.freedByView(ctx, self, fresh) {
		// The view was published once the old owner's last writes had
		// landed, by the version it names: a cache that has seen it holds
		// them. Else a listing sent after the members' listing that showed
		// the view has them. (One sent after each runner's take, not
		// shared, made a join's 154 takes 4.7 s on the average; one shared
		// listing of 10,000 loops' versions, 5-6 s: BenchmarkShards, runs
		// L and M.)
		if !l.cacheHolds(ctx, fresh, l.Shard.ViewWritten(ownerOf(fresh.Status.Owner))) {
			if rv := l.versions.of(ctx, l.APIReader, r.key, l.Shard.Listed()); rv != "" && rv != fresh.ResourceVersion {
				if err := l.readInTurn(ctx, r.key, fresh); err != nil {
					return failed, self, err
				}
			}
		}
	}
	if l.handedTo(self, r.key, fresh.Status.Owner) {
		l.tookUnder(r.key, self.Epoch)
		return handed, self, nil
	}
	if l.Shard.Free(string(fresh.UID), ownerOf(fresh.Status.Owner)) {
		before := l.tookUnder(r.key, self.Epoch) // its first write names this replica
		r.tookBefore = &before
		return deferred, self, nil
	}
	done, err := l.takeoverTurn(ctx)
	if err != nil {
		return failed, self, err
	}
	defer done()
	if self, ok = l.Shard.Self(); !ok {
		return refused, self, errLapsed
	}
	err = l.claim(ctx, r, self, fresh)
	return claimResult(err), self, err
}

// freedByView says whether a loop may be taken only because its recorded
// owner, another replica live under the recorded epoch, published a view
// that gives it away (not because that epoch ended: a dead owner's writes
// landed long before).
func (l *Loops) freedByView(ctx context.Context, self shard.Owner, loop *v1alpha1.ControlLoop) bool {
	o := ownerOf(loop.Status.Owner)
	if o == nil || o.Member == self.Member || !l.Shard.Free(string(loop.UID), o) {
		return false
	}
	ended, err := l.Shard.MayTake(ctx, o) // no request: the listing answered Free
	return err == nil && !ended
}

// handedTo says whether a loop recorded as owned by o was handed on to this
// replica (self): o is self, and this replica did not take the loop under
// self's epoch.
func (l *Loops) handedTo(self shard.Owner, key types.NamespacedName, o *v1alpha1.LoopOwner) bool {
	if o == nil || *ownerOf(o) != self {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.took[key] != self.Epoch
}

// tookUnder records that this replica took a loop under epoch, and says
// the epoch recorded before (0: none).
func (l *Loops) tookUnder(key types.NamespacedName, epoch int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.took == nil {
		l.took = map[types.NamespacedName]int64{}
	}
	before := l.took[key]
	l.took[key] = epoch
	return before
}

// deferredRefused undoes tookUnder for a runner whose deferred claim was
// refused before any write of its landed: no status names this replica by
// its own write since, so one that does is a handover to it (handedTo),
// taken without a claim. The old owner's last writes (a stopping
// replica's handovers, an acting tick's record) race the new owner's first
// one, and a handover landing first would otherwise cost a claim more.
func (l *Loops) deferredRefused(r *runner) {
	if r.tookBefore == nil {
		return
	}
	before := *r.tookBefore
	r.tookBefore = nil
	if r.out.landed() >= r.claimed {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if before == 0 {
		delete(l.took, r.key)
	} else {
		l.took[r.key] = before
	}
}

// claim makes this replica the loop's recorded owner, and reads into fresh
// the loop as the API server has it then. It refuses while another live
// replica is recorded. The claim is written as a tick's status is
// (writeStatus's patch), from the loop as the cache has it: it moves
// status.sequence on, on the condition that the API server still holds the
// cached one, so that of two replicas claiming at once one fails, and a
// write of the loop's previous runner, landing late, is refused. A cache
// behind the API server is read again from it, and the claim made once
// more. (A read of the loop and of its old owner's Lease before every
// claim made a failover's claims take 2.6 s on average from their turn to
// their answer, 100 of them to make: BenchmarkShards.)
func (l *Loops) claim(ctx context.Context, r *runner, self shard.Owner, fresh *v1alpha1.ControlLoop) error {
	if err := l.Client.Get(ctx, r.key, fresh); err != nil { // read again: the turn may have been long
		return err
	}
	err := l.claimRead(ctx, self, fresh)
	if errors.Is(err, errStale) {
		if err := l.APIReader.Get(ctx, r.key, fresh); err != nil {
			return err
		}
		err = l.claimRead(ctx, self, fresh)
	}
	return err
}

// claimRead claims the loop as read for self, and reads it back as
// claimed; errLapsed when this replica is no longer self.
func (l *Loops) claimRead(ctx context.Context, self shard.Owner, loop *v1alpha1.ControlLoop) error {
	if now, ok := l.Shard.Self(); !ok || now != self {
		return errLapsed
	}
	may, err := l.Shard.MayTake(ctx, ownerOf(loop.Status.Owner))
	if err != nil {
		return fmt.Errorf("reading the recorded owner's Lease: %w", err) // tried again
	}
	if !may {
		return errNotOwner
	}
	claimed := loop.Status // read only, as the patch is made
	claimed.Owner = &v1alpha1.LoopOwner{Member: self.Member, Epoch: self.Epoch}
	patch, err := statusPatch(asRead(loop), &claimed)
	if err != nil {
		return err
	}
	l.tookUnder(client.ObjectKeyFromObject(loop), self.Epoch) // before it is sent: it may land whatever the answer
	err = l.Client.Status().Patch(ctx, loop, patch)
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return errors.Join(errNotOwner, err)
	case apierrors.IsInvalid(err), apierrors.IsConflict(err):
		// Another write since the read: read again, and MayTake says
		// whether another live replica owns the loop now. The write is as
		// likely this replica's own (of a runner stopped when the member
		// Lease lapsed, or timed out here and landed there) as another
		// replica's claim; stopping on it left the loop without a runner
		// until its spec changed (BenchmarkScale, 1,000 loops: 21 never
		// ticked).
		return errors.Join(errStale, fmt.Errorf("claiming the loop: %w", err))
	}
	return fmt.Errorf("claiming the loop: %w", err) // a timeout, any refusal: tried again
}

// acting says whether a runner may tick its loop as read from the cache:
// this replica still holds its membership under the epoch it claimed the
// loop with, and the loop names no other owner. A cache older than the
// claim (a lower status.sequence) may name another: it says nothing new.
// Nor does one that names an owner whose epoch ended (a late write of a
// dead replica's, refusing this runner's deferred claim): the runner takes
// the loop again (catchUp), as its refused write left it stale.
// When a cache as new as the claim names another, the API server says; an
// error reading it, or errLapsed, says neither: the runner tries again,
// acting meanwhile on nothing. (Reading the API server whenever the cache
// lagged behind the claim made every tick of a thousand loops a GET of a
// saturated API server: a quarter of governor's CPU, BenchmarkScale.)
func (l *Loops) acting(ctx context.Context, r *runner, cached *v1alpha1.ControlLoop) (bool, error) {
	if l.Shard == nil || r.status == nil {
		return true, nil
	}
	self, ok := l.Shard.Self()
	if !ok {
		return false, errLapsed
	}
	claimed := ownerOf(r.status.Owner)
	if claimed == nil || *claimed != self {
		return false, nil
	}
	if o := ownerOf(cached.Status.Owner); o == nil || *o == self || cached.Status.Sequence < r.claimed || l.Shard.Free(string(cached.UID), o) {
		return true, nil
	}
	var fresh v1alpha1.ControlLoop
	if err := l.APIReader.Get(ctx, r.key, &fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading the loop's owner: %w", err)
	}
	o := ownerOf(fresh.Status.Owner)
	return o != nil && *o == self, nil
}

// reclaim makes a runner read its loop again and claim it anew when it
// claimed it under an earlier epoch of this replica: the member Lease
// expired since, and another replica may have run the loop meanwhile.
func (l *Loops) reclaim(r *runner) {
	if l.Shard == nil || r.status == nil || r.status.Owner == nil {
		return
	}
	self, ok := l.Shard.Self()
	if ok && r.status.Owner.Member == self.Member && r.status.Owner.Epoch != self.Epoch {
		r.status, r.handed = nil, nil
	}
}

// handoverWait is how long a sharded runner waits before it ticks: until
// minInterval after the loop's last recorded tick, which another replica,
// or an earlier runner of this one, may have run.
func (l *Loops) handoverWait(r *runner) time.Duration {
	if l.Shard == nil {
		return 0
	}
	last := previousTick(r.status)
	if last.IsZero() {
		return 0
	}
	return time.Until(last.Add(r.minInterval))
}

// caughtUpFailed is what a runner does when it could not catch up with its
// loop: stop at once when another replica owns it, else retry.
func caughtUpFailed(log logr.Logger, err error) (time.Duration, bool) {
	if errors.Is(err, errNotOwner) {
		return 0, false
	}
	if !errors.Is(err, errLapsed) { // the member logs why
		log.Error(err, "catching up with the loop's status")
	}
	return retryAfter, true
}

// released is the status a runner stopping gracefully leaves: owned by
// the live member the loop goes to next, which takes it without a claim
// (handedOrClaimed), or by none when there is no other; either way the
// next owner need not wait for this replica's Lease.
func (l *Loops) released(r *runner) {
	if l.Shard == nil || r.status == nil || r.status.Owner == nil {
		return
	}
	st := r.status.DeepCopy()
	st.Owner = nil
	if next, ok := l.Shard.Successor(string(r.loop.UID)); ok {
		st.Owner = &v1alpha1.LoopOwner{Member: next.Member, Epoch: next.Epoch}
	}
	r.status = st
}

// Keep starts a runner for a loop that has none, without waking one that
// runs: the loop was assigned to this replica. It says whether it started
// one.
func (l *Loops) Keep(key types.NamespacedName) bool {
	if l.has(key) {
		return false
	}
	l.Ensure(key)
	return true
}

// Release stops the runner of a loop a rebalance gave away, if it has one.
// Its last quiet ticks (since its last status write, at most a flush
// interval, also those handed over and not written yet) are not written:
// the view the rebalance publishes once the runner stopped lets the loop's
// new owner take it at once, and that owner's first status write claims
// it. New owners waited for a handover write of each loop (run H: 2,500 of
// them, 14 s at the median and 28 s for the last, on this machine's API
// server); written beside the view, the handovers landed before the new
// owners' claims on 127 of 164 loops and refused them (BenchmarkShards,
// run I). What else the runner handed over before it stopped (an acting
// tick's record) is still written, and its write in flight waited for. The
// runner stays registered until then: a loop assigned back meanwhile gets
// no second runner while the first still ticks or writes.
func (l *Loops) Release(key types.NamespacedName) {
	l.mu.Lock()
	r, ok := l.runners[key]
	l.mu.Unlock()
	if !ok {
		return
	}
	r.givenAway.Store(true)
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	if l.writes().dropQuiet(&r.out) {
		// In a takeover turn: a rebalance releases a whole share at once,
		// and their writes all sent together (3,345 when a replica came
		// back among 10,000 loops: BenchmarkShards) swamped a busy API
		// server for minutes, the member Leases' renewals with them.
		done, _ := l.takeoverTurn(context.Background()) // waits, never fails
		l.writes().settle(&r.out)
		done()
	}
	l.mu.Lock()
	if l.runners[key] == r {
		delete(l.runners, key)
		r.telemetry.forget() // under l.mu: before a runner made again for the key records anything
	}
	l.mu.Unlock()
}

// heldElsewhere says whether a loop this replica has no runner for is
// recorded as run by another member the last listing had live: not to be
// taken yet (Sharding.HeldElsewhere).
func (l *Loops) heldElsewhere(key types.NamespacedName, loop *v1alpha1.ControlLoop) bool {
	return l.Shard != nil && l.Shard.HeldElsewhere(string(loop.UID), ownerOf(loop.Status.Owner)) && !l.has(key)
}

// lastTick says, once the runner a loop has now stopped, when its last
// tick began (zero: none, or no runner).
func (l *Loops) lastTick(key types.NamespacedName) func() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.runners[key]; ok {
		return func() time.Time { return r.ticked } // read once stopped: the runner wrote it before
	}
	return func() time.Time { return time.Time{} }
}

func (l *Loops) has(key types.NamespacedName) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.runners[key]
	return ok
}

// disown clears this replica as the recorded owner of a loop it has no
// runner for and is not assigned (a runner that stopped without writing,
// such as one that met another owner), so that its assignee may take it.
// The loop as cached is the condition: a claim since then wins.
func (l *Loops) disown(ctx context.Context, loop *v1alpha1.ControlLoop) {
	released := loop.Status // read only, as the patch is made
	released.Owner = nil
	if err := l.writeStatus(ctx, loop, asRead(loop), &released); err != nil && !errors.Is(err, errStale) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		l.Log.Error(err, "clearing this replica as a loop's owner", "loop", client.ObjectKeyFromObject(loop))
	}
}

// running is the number of loops with a runner.
func (l *Loops) running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.runners)
}

// shardedLoops runs, in every replica (there is no leader), the loops
// assigned to it: it holds the replica's member Lease, and after each
// renewal starts the runners of loops assigned to it and stops the others.
// On stop, the runners stop and write their status first, then the Lease
// is handed back.
type shardedLoops struct {
	loops  *Loops
	member *shard.Member

	// The loops being released or disowned, in the background: a
	// rebalance does not wait for their writes.
	mu      sync.Mutex
	handing map[types.NamespacedName]chan struct{} // closed when done
	handoff sync.WaitGroup
}

// Start implements manager.Runnable.
func (s *shardedLoops) Start(ctx context.Context) error {
	memberCtx, stopMember := context.WithCancel(context.WithoutCancel(ctx))
	// Rebalances run beside the renewals, never in their way: one waiting
	// at most (it reads the newest listing when it runs). Run after each
	// renewal, a rebalance held the next one back as long as it took: the
	// first (waiting then for the cache of 10,000 loops) past the Lease's
	// expiry, and the replica coming back lapsed at once (BenchmarkShards).
	wanted := make(chan struct{}, 1)
	renewing, balancing := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(renewing)
		if !s.loopsCached(memberCtx) {
			return
		}
		_ = s.member.Run(memberCtx, func() {
			select {
			case wanted <- struct{}{}:
			default:
			}
		})
	}()
	go func() {
		defer close(balancing)
		for {
			select {
			case <-memberCtx.Done():
				return
			case <-wanted:
				s.rebalance(ctx)
			}
		}
	}()
	err := s.loops.Start(ctx)
	stopMember()
	<-renewing
	<-balancing
	s.handoff.Wait()
	shardLoops.DeleteLabelValues(s.member.Name)
	releaseCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rerr := s.member.Release(releaseCtx); rerr != nil {
		s.loops.Log.Error(rerr, "releasing the member Lease")
	}
	return err
}

// loopsCached waits until the cache holds every loop (false when ctx ends
// first): a replica joins the members only then. Joining first, it had the
// others stop its share's runners while it waited, seconds before it could
// start its own (2,547 of 10,000 loops first ticked by the joining replica
// 7.7 s after its Lease at the median, BenchmarkShards run J).
func (s *shardedLoops) loopsCached(ctx context.Context) bool {
	for {
		err := s.loops.Client.List(ctx, &v1alpha1.ControlLoopList{}, client.UnsafeDisableDeepCopy)
		if err == nil {
			return true
		}
		if ctx.Err() == nil {
			s.loops.Log.Error(err, "waiting for the loops' cache before joining the members")
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(s.member.Timings.RetryPeriod):
		}
	}
}

// rebalance starts the runners of the loops assigned to this replica and
// stops, in the background, those of loops assigned elsewhere, by the
// members as last listed; once those runners have stopped and what they
// had handed over is written (in the background too: the next rebalance
// does not wait for it), it publishes that view in the member Lease
// (shard.ViewAnnotation), and the loops' new owners take them at once,
// their claims deferred to their first status writes. (Published as soon
// as the runners stopped, the view let new owners read loops that one of
// their old owner's writes, landing later, moved on: their first writes
// were refused, and those loops first ticked by them 1-2 s after the
// others: BenchmarkShards, run L.) While the
// replica may not act it changes nothing: its runners wait (errLapsed).
func (s *shardedLoops) rebalance(ctx context.Context) {
	if ctx.Err() != nil || s.loops.lapsed() {
		return // stopping (its runners hand over): starting none; or lapsed
	}
	begun := time.Now()
	// The cache's own objects, read only: a copy of every loop with its
	// history, twice a second, was 7 % of governor's CPU with 1,000 loops.
	var list v1alpha1.ControlLoopList
	if err := s.loops.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		if ctx.Err() == nil {
			s.loops.Log.Error(err, "listing loops to rebalance")
		}
		return
	}
	var stopping []<-chan struct{}
	var lastTicks []func() time.Time
	started := 0
	s.loops.assigning.Lock()
	view := s.member.Members()
	for i := range list.Items {
		loop := &list.Items[i]
		key := types.NamespacedName{Namespace: loop.Namespace, Name: loop.Name}
		switch {
		case loop.DeletionTimestamp != nil:
		case s.loops.owns(loop):
			// A loop its old owner still runs is taken when handed on
			// (its watch event starts the runner: Reconciler.handedOn),
			// once that owner publishes a view that gives it away, or
			// once that owner's Lease ends (a later rebalance). A runner
			// started now would be refused: after every renewal, for each
			// of the 3,345 loops of a replica coming back among 10,000
			// (BenchmarkShards).
			if !s.loops.heldElsewhere(key, loop) && s.loops.Keep(key) {
				started++
			}
		case s.loops.has(key):
			lastTicks = append(lastTicks, s.loops.lastTick(key))
			stopping = append(stopping, s.inBackground(key, func() { s.loops.Release(key) }))
		case loop.Status.Owner != nil && loop.Status.Owner.Member == s.member.Name && !s.member.GivesAway(string(loop.UID)):
			// A loop the published view gives away is its assignee's
			// to take as it is: a write clearing the owner here landed
			// before that assignee's claim, and refused it.
			s.inBackground(key, func() { s.loops.disown(ctx, loop) })
		}
	}
	s.loops.assigning.Unlock()
	shardLoops.WithLabelValues(s.member.Name).Set(float64(s.loops.running()))
	s.handoff.Go(func() { s.publish(ctx, view, begun, started, stopping, lastTicks) })
}

// publish publishes a rebalance's view once the releases it started are
// done, unless the members changed since (a later rebalance publishes),
// and logs what the rebalance did.
func (s *shardedLoops) publish(ctx context.Context, view []string, begun time.Time, started int, stopping []<-chan struct{}, lastTicks []func() time.Time) {
	for _, done := range stopping {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
	if started > 0 || len(stopping) > 0 {
		// idle: the longest a runner stopped had gone without a tick when
		// the rebalance began (its loop's wait for its new owner is that
		// plus the handoff, which its status.history does not show: quiet
		// ticks are written every flush interval).
		var idle time.Duration
		for _, last := range lastTicks {
			if t := last(); !t.IsZero() {
				idle = max(idle, begun.Sub(t))
			}
		}
		s.loops.Log.Info("rebalanced", "members", view, "started", started, "stopped", len(stopping),
			"in", time.Since(begun).Seconds(), "idle", idle.Seconds())
	}
	if slices.Equal(view, s.member.Members()) {
		s.member.Publish(view, s.loops.written.get())
	}
}

// inBackground runs a loop's release or disowning, unless one runs, and
// says when it (or the one running) is done: the member's next renewal
// does not wait for its write. (Waiting for them, a rebalance that gave
// away 50 loops held the renewal back for seconds on a busy API server,
// and one giving away thousands would hold it past its deadline:
// BenchmarkShards.)
func (s *shardedLoops) inBackground(key types.NamespacedName, f func()) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if done, ok := s.handing[key]; ok {
		return done
	}
	if s.handing == nil {
		s.handing = map[types.NamespacedName]chan struct{}{}
	}
	done := make(chan struct{})
	s.handing[key] = done
	s.handoff.Go(func() {
		defer close(done)
		f()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.handing, key)
	})
	return done
}
