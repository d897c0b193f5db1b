package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"governor.dev/governor/api/v1alpha1"
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
}

func (f *fakeShard) Owns(string) bool { return true }
func (f *fakeShard) Self() (shard.Owner, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
func (f *fakeShard) lapse() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ok = false
}

// startSharded starts Loops as a replica of s; see startLoopsWith.
func startSharded(t *testing.T, s Sharding, loops ...*v1alpha1.ControlLoop) *loopsEnv {
	t.Helper()
	return startLoopsWith(t, func(l *Loops) { l.Shard = s }, loops...)
}

// A sharded runner records its replica as the loop's owner with its
// ticks, and clears it when it stops gracefully.
func TestShardedRunnerRecordsAndReleasesOwner(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	e := startSharded(t, &fakeShard{self: shard.Owner{Member: "me", Epoch: 3}, ok: true}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 3 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, &v1alpha1.LoopOwner{Member: "me", Epoch: 3}, e.status(t, key).Owner)
	e.l.Release(key)
	assert.False(t, e.registered(key))
	st := e.status(t, key)
	assert.Nil(t, st.Owner, "a runner released gracefully leaves no owner")
	assert.Positive(t, st.Tick, "the release keeps the ticks")
}

// A loop recorded as run by another live replica is not ticked: its runner
// leaves at once, writing nothing; once that replica is gone, it is taken.
func TestShardedRunnerLeavesALoopOwnedElsewhere(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "other", Epoch: 1}
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, live: map[string]int64{"other": 1}}
	e := startSharded(t, s, loop)
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond)
	st := e.status(t, key)
	assert.Zero(t, st.Tick)
	assert.Equal(t, "other", st.Owner.Member)

	s.mu.Lock()
	s.live["other"] = 2 // came back under a new epoch: its runner of epoch 1 stopped
	s.mu.Unlock()
	e.l.Keep(key)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "me", e.status(t, key).Owner.Member)
}

// A claim that fails without another live owner (a conflict with a status
// write of this replica's own, a timeout, a Lease that could not be read)
// is tried again: the loop is not left without a runner. Each failure
// here stopped the runner for good.
func TestShardedRunnerTriesAFailedClaimAgain(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	loop.Status.Owner = &v1alpha1.LoopOwner{Member: "gone", Epoch: 1} // MayTake reads its Lease
	key := client.ObjectKeyFromObject(loop)
	var claims atomic.Int32
	failures := []error{
		apierrors.NewConflict(schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "controlloops"}, loop.Name, nil),
		apierrors.NewTimeoutError("the claim", 1),
	}
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true, unreadable: 1}
	e := startLoopsWith(t, func(l *Loops) {
		l.Shard = s
		l.Client = interceptor.NewClient(l.Client.(client.WithWatch), interceptor.Funcs{
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				if n := int(claims.Add(1)) - 1; n < len(failures) {
					return failures[n]
				}
				return c.SubResource(sub).Update(ctx, obj, opts...)
			},
		})
	}, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "me", e.status(t, key).Owner.Member)
	assert.GreaterOrEqual(t, int(claims.Load()), len(failures)+1, "the failed claims were not made")
}

// A replica that may no longer act (its Lease lapsed) stops its runners at
// once and writes nothing more, not even on stop: another may own them.
func TestShardedRunnerStopsWhenLeaseLapses(t *testing.T) {
	loop := quietLoop(t, "web", "web-uid", 20*time.Millisecond)
	key := client.ObjectKeyFromObject(loop)
	s := &fakeShard{self: shard.Owner{Member: "me", Epoch: 1}, ok: true}
	e := startSharded(t, s, loop)
	require.Eventually(t, func() bool { return e.status(t, key).Tick >= 2 }, 10*time.Second, 10*time.Millisecond)
	s.lapse()
	require.Eventually(t, func() bool { return !e.registered(key) }, 10*time.Second, 10*time.Millisecond)
	before := e.status(t, key)
	time.Sleep(100 * time.Millisecond) // five intervals
	e.stop()
	after := e.status(t, key)
	assert.Equal(t, before.Tick, after.Tick, "a runner ticked after its replica's Lease lapsed")
	assert.Equal(t, "me", after.Owner.Member, "a lapsed replica must not clear the owner: another may have taken it")
}
