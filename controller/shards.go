package controller

import (
	"context"
	"errors"
	"fmt"
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
		Help: "Claims of loops by this replica, by result: claimed; refused (another live replica owns the loop, or this one lapsed); failed (tried again).",
	}, []string{"result"})
	shardTakeoverSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "governor_shard_takeover_seconds",
		Help:    "Time from a runner's wait for a takeover turn to its claim's answer, whatever the result.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5 ms to 10 s
	})
)

// claimResult is the result label of a claim that ended with err.
func claimResult(err error) string {
	switch {
	case err == nil:
		return "claimed"
	case errors.Is(err, errNotOwner), errors.Is(err, errLapsed):
		return "refused"
	}
	return "failed"
}

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

// owns says whether this replica runs the loop.
func (l *Loops) owns(loop *v1alpha1.ControlLoop) bool {
	return l.Shard == nil || l.Shard.Owns(string(loop.UID))
}

// A claim is an update (not a patch): it carries the status's
// resourceVersion, so that of two replicas claiming at once one fails.
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops/status,verbs=update

// claim makes this replica the loop's recorded owner, on the status as the
// API server has it (fresh): with its resourceVersion as precondition, so
// that of two replicas claiming at once one fails. It refuses while
// another live replica is recorded. The claim moves status.sequence on: a
// write of the loop's previous runner, landing late, is refused.
func (l *Loops) claim(ctx context.Context, r *runner, fresh *v1alpha1.ControlLoop) error {
	self, ok := l.Shard.Self()
	if !ok {
		return errLapsed
	}
	may, err := l.Shard.MayTake(ctx, ownerOf(fresh.Status.Owner))
	if err != nil {
		return fmt.Errorf("reading the recorded owner's Lease: %w", err) // tried again
	}
	if !may {
		return errNotOwner
	}
	fresh.Status.Owner = &v1alpha1.LoopOwner{Member: self.Member, Epoch: self.Epoch}
	fresh.Status.Sequence++
	if err := l.Client.Status().Update(ctx, fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return errors.Join(errNotOwner, err)
		}
		// A conflict (another write between the read and the claim), a
		// timeout, any refusal: tried again, the loop read again, and
		// MayTake says whether another live replica owns it. The conflict
		// is as likely a status write of this replica's own (of a runner
		// stopped when the member Lease lapsed, or timed out here and
		// landed there) as another replica's claim; stopping on it, or on
		// a timeout, left the loop without a runner until its spec changed
		// (BenchmarkScale, 1,000 loops: 21 never ticked).
		return fmt.Errorf("claiming the loop: %w", err)
	}
	return nil
}

// acting says whether a runner may tick its loop as read from the cache:
// this replica still holds its membership under the epoch it claimed the
// loop with, and the loop names no other owner. A cache older than the
// claim (a lower status.sequence) may name another: it says nothing new.
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
	if o := ownerOf(cached.Status.Owner); o == nil || *o == self || cached.Status.Sequence < r.claimed {
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

// released is the status a runner stopping gracefully leaves: with no
// owner, so that the next replica need not wait for this one's Lease.
func (l *Loops) released(r *runner) {
	if l.Shard == nil || r.status == nil || r.status.Owner == nil {
		return
	}
	st := r.status.DeepCopy()
	st.Owner = nil
	r.status = st
}

// Keep starts a runner for a loop that has none, without waking one that
// runs: the loop was assigned to this replica.
func (l *Loops) Keep(key types.NamespacedName) {
	if !l.has(key) {
		l.Ensure(key)
	}
}

// Release stops a loop's runner gracefully, if it has one: its status is
// written with no owner, for the replica it was assigned to.
// The runner stays registered until it has stopped: a loop assigned back
// meanwhile gets no second runner while the first still ticks or writes.
func (l *Loops) Release(key types.NamespacedName) {
	l.mu.Lock()
	r, ok := l.runners[key]
	l.mu.Unlock()
	if !ok {
		return
	}
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	l.writes().settle(&r.out)
	l.mu.Lock()
	if l.runners[key] == r {
		delete(l.runners, key)
		r.telemetry.forget() // under l.mu: before a runner made again for the key records anything
	}
	l.mu.Unlock()
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
// The cached resourceVersion is the precondition: a claim since then wins.
func (l *Loops) disown(ctx context.Context, loop *v1alpha1.ControlLoop) {
	loop.Status.Owner = nil
	loop.Status.Sequence++
	if err := l.Client.Status().Update(ctx, loop); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && ctx.Err() == nil {
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
}

// Start implements manager.Runnable.
func (s *shardedLoops) Start(ctx context.Context) error {
	memberCtx, stopMember := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.member.Run(memberCtx, func() { s.rebalance(ctx) })
	}()
	err := s.loops.Start(ctx)
	stopMember()
	<-done
	shardLoops.DeleteLabelValues(s.member.Name)
	releaseCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rerr := s.member.Release(releaseCtx); rerr != nil {
		s.loops.Log.Error(rerr, "releasing the member Lease")
	}
	return err
}

// rebalance starts the runners of the loops assigned to this replica and
// stops, in parallel, those of loops assigned elsewhere. While the replica
// may not act it changes nothing: its runners wait (errLapsed).
func (s *shardedLoops) rebalance(ctx context.Context) {
	if s.loops.lapsed() {
		return
	}
	// The cache's own objects, read only: a copy of every loop with its
	// history, twice a second, was 7 % of governor's CPU with 1,000 loops.
	var list v1alpha1.ControlLoopList
	if err := s.loops.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		if ctx.Err() == nil {
			s.loops.Log.Error(err, "listing loops to rebalance")
		}
		return
	}
	var wg sync.WaitGroup
	for i := range list.Items {
		loop := &list.Items[i]
		key := types.NamespacedName{Namespace: loop.Namespace, Name: loop.Name}
		switch {
		case loop.DeletionTimestamp != nil:
		case s.loops.owns(loop):
			s.loops.Keep(key)
		case s.loops.has(key):
			wg.Go(func() { s.loops.Release(key) })
		case loop.Status.Owner != nil && loop.Status.Owner.Member == s.member.Name:
			wg.Go(func() { s.loops.disown(ctx, loop.DeepCopy()) })
		}
	}
	wg.Wait()
	shardLoops.WithLabelValues(s.member.Name).Set(float64(s.loops.running()))
}
