package shard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func uids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("6f1c2a3e-%04x-4bde-9a1e-%012x", i%65536, i)
	}
	return out
}

func TestAssignIsStableAndIgnoresOrder(t *testing.T) {
	a, b := []string{"m-0", "m-1", "m-2"}, []string{"m-2", "m-0", "m-1"}
	for _, u := range uids(1000) {
		first, again, reordered := Assign(u, a), Assign(u, a), Assign(u, b)
		if first != again || first != reordered {
			t.Fatalf("%s: assignment depends on the members' order or changes between calls", u)
		}
	}
	if Assign("x", nil) != "" {
		t.Fatal("no members must assign to nobody")
	}
}

// A member joining takes about 1/N of the loops, all from others; one
// leaving gives away only its own; shares stay near 1/N.
func TestAssignMovesAboutOneNth(t *testing.T) {
	keys := uids(20000)
	three := []string{"governor-0", "governor-1", "governor-2"}
	four := append([]string{"governor-3"}, three...)
	shares := map[string]int{}
	moved := 0
	for _, u := range keys {
		before, after := Assign(u, three), Assign(u, four)
		shares[after]++
		if before != after {
			moved++
			if after != "governor-3" {
				t.Fatalf("%s moved from %s to %s, not to the member that joined", u, before, after)
			}
		}
	}
	if f := float64(moved) / float64(len(keys)); f < 0.22 || f > 0.28 {
		t.Errorf("a fourth member took %.3f of the loops, want about 0.25", f)
	}
	for m, n := range shares {
		if f := float64(n) / float64(len(keys)); f < 0.22 || f > 0.28 {
			t.Errorf("%s has %.3f of the loops, want about 0.25", m, f)
		}
	}
	// governor-1 leaves: only its loops move.
	two := []string{"governor-0", "governor-2"}
	for _, u := range keys {
		if before := Assign(u, three); before != "governor-1" && Assign(u, two) != before {
			t.Fatalf("%s moved from %s though only governor-1 left", u, before)
		}
	}
}

func lease(member, holder string, renewed time.Time, epoch int32) coordinationv1.Lease {
	return coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "gov", Name: LeasePrefix + member},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(8)),
			RenewTime: &metav1.MicroTime{Time: renewed}, LeaseTransitions: ptr.To(epoch)},
	}
}

func TestLiveExcludesExpiredReleasedAndOthers(t *testing.T) {
	now := time.Now()
	other := lease("x", "x", now, 1)
	other.Name = "governor.governor.dev" // the leader election Lease
	live, ended := Live([]coordinationv1.Lease{
		lease("a", "a_1", now.Add(-time.Second), 3),
		lease("b", "b_1", now.Add(-9*time.Second), 1), // expired
		lease("c", "", now, 2),                        // released
		other,
	}, now)
	if len(live) != 1 || live["a"] != (Owner{Member: "a", Epoch: 3}) {
		t.Fatalf("live members = %v, want only a at epoch 3", live)
	}
	if len(ended) != 2 || ended["b"].Epoch != 1 || ended["c"].Epoch != 2 {
		t.Fatalf("ended members = %v, want b at epoch 1 and c at 2", ended)
	}
}

func newMember(c client.WithWatch, name string) *Member {
	return NewMember(c, "gov", name, Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 500 * time.Millisecond}, logr.Discard())
}

func TestMemberTakesRenewsAndReleases(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	a := newMember(c, "a")
	if _, ok := a.Self(); ok {
		t.Fatal("a member without its Lease must not act")
	}
	must(t, a.renew(ctx), a.list(ctx))
	self, ok := a.Self()
	if !ok || self != (Owner{Member: "a", Epoch: 1}) {
		t.Fatalf("Self = %v %v, want a at epoch 1", self, ok)
	}
	must(t, a.renew(ctx))
	if self, _ := a.Self(); self.Epoch != 1 {
		t.Fatalf("a renewal changed the epoch to %d", self.Epoch)
	}
	if !a.Owns("any") {
		t.Fatal("the only member must own every loop")
	}
	// A second process of the same pod waits while the Lease is held.
	if err := newMember(c, "a").renew(ctx); err == nil {
		t.Fatal("a second process took a held member Lease")
	}
	must(t, a.Release(ctx))
	if _, ok := a.Self(); ok {
		t.Fatal("a released member must not act")
	}
	again := newMember(c, "a")
	must(t, again.renew(ctx))
	if self, _ := again.Self(); self.Epoch != 2 {
		t.Fatalf("a member taking a released Lease is at epoch %d, want 2", self.Epoch)
	}
}

// A member that could not renew within its deadline (suspended, cut off)
// stops acting; renewed before its Lease expired it acts again under the
// same epoch (no other member can have taken its loops), renewed after, it
// comes back under a new epoch.
func TestMemberLapseKeepsEpochUntilExpiry(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	a := newMember(c, "a")
	must(t, a.renew(ctx))
	setRenewed(a, time.Now().Add(-7*time.Second))
	if _, ok := a.Self(); ok || a.Owns("x") {
		t.Fatal("a member past its renew deadline must not act")
	}
	must(t, a.renew(ctx))
	if self, ok := a.Self(); !ok || self.Epoch != 1 {
		t.Fatalf("renewed before expiry Self = %v %v, want epoch 1", self, ok)
	}
	setRenewed(a, time.Now().Add(-9*time.Second))
	must(t, a.renew(ctx))
	if self, ok := a.Self(); !ok || self.Epoch != 2 {
		t.Fatalf("renewed after expiry Self = %v %v, want epoch 2", self, ok)
	}
}

// A renewal sent before the Lease expired but answered after it may have
// landed once others took the member for gone: it does not renew the
// epoch, and the next renewal starts a new one.
func TestMemberRenewalLandingAfterExpiryStartsNewEpoch(t *testing.T) {
	ctx := context.Background()
	var sent []int32
	var a *Member
	slow := false
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme.Scheme).Build(), interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			l := obj.(*coordinationv1.Lease)
			sent = append(sent, ptr.Deref(l.Spec.LeaseTransitions, 0))
			if slow {
				slow = false
				a.mu.Lock()
				expires := a.renewed.Add(a.Timings.LeaseDuration)
				a.mu.Unlock()
				time.Sleep(time.Until(expires) + 10*time.Millisecond)
			}
			return c.Update(ctx, obj, opts...)
		},
	})
	a = newMember(c, "a")
	must(t, a.renew(ctx), a.renew(ctx))
	setRenewed(a, time.Now().Add(-6500*time.Millisecond))
	slow = true
	if err := a.renew(ctx); err == nil {
		t.Fatal("a renewal answered after the Lease expired renewed it")
	}
	if _, ok := a.Self(); ok {
		t.Fatal("a member whose renewal landed late acts")
	}
	must(t, a.renew(ctx))
	if self, ok := a.Self(); !ok || self.Epoch != 2 {
		t.Fatalf("after a late renewal Self = %v %v, want epoch 2", self, ok)
	}
	if fmt.Sprint(sent) != "[1 1 2]" { // the first renewal creates the Lease
		t.Errorf("epochs sent = %v, want [1 1 2]: the late renewal was sent under the epoch", sent)
	}
}

func setRenewed(m *Member, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewed = at
}

func TestMayTake(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	a, b := newMember(c, "a"), newMember(c, "b")
	must(t, a.renew(ctx), a.list(ctx), b.renew(ctx)) // b joined since a listed
	cases := []struct {
		owner *Owner
		want  bool
	}{
		{nil, true},
		{&Owner{Member: "a", Epoch: 7}, true},
		{&Owner{Member: "b", Epoch: 1}, false}, // live, same epoch
		{&Owner{Member: "b", Epoch: 0}, true},  // b since came back: that runner stopped
		{&Owner{Member: "gone", Epoch: 1}, true},
	}
	for _, tc := range cases {
		if got, err := a.MayTake(ctx, tc.owner); err != nil || got != tc.want {
			t.Errorf("MayTake(%v) = %v, want %v", tc.owner, got, tc.want)
		}
	}
	must(t, a.list(ctx))
	if got := a.Members(); fmt.Sprint(got) != "[a b]" {
		t.Errorf("Members = %v, want [a b]", got)
	}
}

// What the last listing saw of an owner answers MayTake (and Free) without reading its
// Lease when it lasts: an epoch that ended, or a newer one live. A member
// that may have come back under a newer epoch since, or that joined since,
// is read from the API server.
func TestMayTakeFromTheListing(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	gone, back, live := lease("gone", "gone_1", now.Add(-9*time.Second), 3), lease("back", "back_1", now.Add(-9*time.Second), 2), lease("live", "live_1", now, 5)
	var reads []string
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(&gone, &back, &live).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			reads = append(reads, key.Name)
			return c.Get(ctx, key, obj, opts...)
		},
	})
	a := newMember(c, "a")
	must(t, a.list(ctx))
	// back comes back under epoch 3 after the listing.
	back.Spec.RenewTime, back.Spec.LeaseTransitions = &metav1.MicroTime{Time: time.Now()}, ptr.To(int32(3))
	must(t, c.Update(ctx, &back))
	cases := []struct {
		owner Owner
		want  bool
		read  bool
	}{
		{Owner{Member: "gone", Epoch: 3}, true, false},
		{Owner{Member: "gone", Epoch: 1}, true, false},
		{Owner{Member: "live", Epoch: 5}, false, false},
		{Owner{Member: "live", Epoch: 4}, true, false},
		{Owner{Member: "back", Epoch: 3}, false, true}, // after the listing's epoch: live now
		{Owner{Member: "new", Epoch: 1}, true, true},   // no Lease
	}
	for _, tc := range cases {
		reads = nil
		// Held elsewhere: refused by the listing alone.
		if held, want := a.HeldElsewhere("uid", &tc.owner), !tc.want && !tc.read; held != want {
			t.Errorf("HeldElsewhere(%v) = %v, want %v", tc.owner, held, want)
		}
		// Free: taken with no claim, by the listing alone.
		if free, want := a.Free("uid", &tc.owner), tc.want && !tc.read; free != want {
			t.Errorf("Free(%v) = %v, want %v", tc.owner, free, want)
		}
		if len(reads) > 0 {
			t.Errorf("HeldElsewhere(%v) or Free read the Lease", tc.owner)
		}
		if got, err := a.MayTake(ctx, &tc.owner); err != nil || got != tc.want {
			t.Errorf("MayTake(%v) = %v %v, want %v", tc.owner, got, err, tc.want)
		}
		if read := len(reads) > 0; read != tc.read {
			t.Errorf("MayTake(%v) read the Lease: %v, want %v", tc.owner, read, tc.read)
		}
	}
	if a.HeldElsewhere("uid", &Owner{Member: "a", Epoch: 1}) || a.HeldElsewhere("uid", nil) {
		t.Error("HeldElsewhere says a loop of this member's, or of none, is held by another")
	}
	if !a.Free("uid", nil) || !a.Free("uid", &Owner{}) {
		t.Error("a loop of no recorded owner is not free")
	}
}

// A listing judges Leases at the time it was sent: one renewed while the
// answer was on its way, which the answer's time would take for expired
// (another member may run its loops again), is live.
func TestListingJudgesLeasesWhenSent(t *testing.T) {
	ctx := context.Background()
	b := lease("b", "b_1", time.Now().Add(-8*time.Second+100*time.Millisecond), 1)
	c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(&b).Build(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			err := c.List(ctx, list, opts...) // read at once, answered after b's expiry
			time.Sleep(200 * time.Millisecond)
			return err
		},
	})
	a := newMember(c, "a")
	must(t, a.list(ctx))
	if got := a.Members(); fmt.Sprint(got) != "[b]" {
		t.Fatalf("Members = %v, want [b]: b's Lease was held when the listing was sent", got)
	}
	if may, _ := a.MayTake(ctx, &Owner{Member: "b", Epoch: 1}); may {
		t.Fatal("a took a loop of b, live when the listing was sent")
	}
}

// A member hands a loop on to the member it goes to among the others, at
// that one's epoch; alone, to none.
func TestSuccessorIsTheAssigneeAmongTheOthers(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	b, c := lease("b", "b_1", now, 4), lease("c", "c_1", now, 7)
	cl := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(&b, &c).Build()
	a := newMember(cl, "a")
	must(t, a.renew(ctx), a.list(ctx))
	epochs := map[string]int64{"b": 4, "c": 7}
	for _, u := range uids(200) {
		next, ok := a.Successor(u)
		want := Assign(u, []string{"b", "c"})
		if !ok || next.Member != want || next.Epoch != epochs[want] {
			t.Fatalf("Successor(%s) = %v %v, want %s at epoch %d", u, next, ok, want, epochs[want])
		}
		if owner := Assign(u, []string{"a", "b", "c"}); owner != "a" && owner != next.Member {
			t.Fatalf("Successor(%s) = %s, but the loop is assigned to %s", u, next.Member, owner)
		}
	}
	alone := newMember(fake.NewClientBuilder().WithScheme(scheme.Scheme).Build(), "a")
	must(t, alone.renew(ctx), alone.list(ctx))
	if next, ok := alone.Successor("x"); ok {
		t.Fatalf("a member alone hands on to %v", next)
	}
}

// expiringAtFirstListing is a client whose first listing finds b's Lease
// 200 ms from expiry (however late it comes), and whose listings after it
// fail from failAfter on (0: none fails); lists counts them.
func expiringAtFirstListing(lists *atomic.Int32, failAfter int32) client.WithWatch {
	b := lease("b", "b_1", time.Now(), 1)
	return interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(&b).Build(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			n := lists.Add(1)
			if n == 1 {
				var l coordinationv1.Lease
				if err := c.Get(ctx, client.ObjectKey{Namespace: "gov", Name: LeasePrefix + "b"}, &l); err != nil {
					return err
				}
				l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now().Add(-8*time.Second + 200*time.Millisecond)}
				if err := c.Update(ctx, &l); err != nil {
					return err
				}
			}
			if failAfter > 0 && n > failAfter {
				return fmt.Errorf("the API server is away")
			}
			return c.List(ctx, list, opts...)
		},
	})
}

// runMember runs a member named a with a retry period of an hour (the
// first round alone is a round) until the test ends.
func runMember(t *testing.T, c client.WithWatch) *Member {
	a := NewMember(c, "gov", "a", Timings{LeaseDuration: 8 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: time.Hour}, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// A member lists the members again when another's Lease expires, not at
// its next round only; once it saw it expired, it waits for its rounds.
func TestMemberListsAgainAtAnotherMembersExpiry(t *testing.T) {
	var lists atomic.Int32
	a := runMember(t, expiringAtFirstListing(&lists, 0))
	deadline := time.Now().Add(10 * time.Second)
	for fmt.Sprint(a.Members()) != "[a]" {
		if time.Now().After(deadline) {
			t.Fatalf("Members = %v 10 s after b's Lease expired, want [a]", a.Members())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := lists.Load(); n != 2 {
		t.Fatalf("%d listings, want 2: the first round's and the one at b's expiry", n)
	}
}

// A listing at another member's expiry that fails is tried again at the
// next round, not at once (the expiry it knows is past).
func TestMemberWaitsForItsRoundAfterAFailedListing(t *testing.T) {
	var lists atomic.Int32
	runMember(t, expiringAtFirstListing(&lists, 1))
	deadline := time.Now().Add(10 * time.Second)
	for lists.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no listing at b's expiry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := lists.Load(); n != 2 {
		t.Fatalf("%d listings, want 2: the first round's and the failed one at b's expiry", n)
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A member that published the view it released its loops under (its
// runners of loops the view gives to others have stopped) frees those
// loops for the others at once: Free, not HeldElsewhere. Only under the
// epoch it was published in: a new epoch of the member writes none, and a
// view of another epoch, or malformed, frees nothing.
func TestPublishedViewFreesTheLoopsItGivesAway(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	a, d := newMember(c, "a"), newMember(c, "d")
	must(t, a.renew(ctx), d.renew(ctx), a.list(ctx), d.list(ctx))
	owner := Owner{Member: "a", Epoch: 1}
	check := func(why string, gives func(uid string) bool) {
		t.Helper()
		for _, u := range uids(200) {
			given := gives(u)
			if free := d.Free(u, &owner); free != given {
				t.Fatalf("%s: Free(%s) = %v, want %v", why, u, free, given)
			}
			if held := d.HeldElsewhere(u, &owner); held == given {
				t.Fatalf("%s: HeldElsewhere(%s) = %v, want %v", why, u, held, !given)
			}
		}
	}
	none := func(string) bool { return false }
	check("nothing published", none)

	a.Publish(a.Members(), "")
	must(t, a.renew(ctx), d.list(ctx))
	toD := func(u string) bool { return Assign(u, []string{"a", "d"}) == "d" }
	gave := 0
	for _, u := range uids(200) {
		if toD(u) {
			gave++
		}
	}
	if gave == 0 || gave == 200 {
		t.Fatalf("rendezvous gave d %d of 200 loops", gave)
	}
	check("a's view published", toD)
	for _, u := range uids(200) {
		if a.GivesAway(u) != toD(u) {
			t.Fatalf("a.GivesAway(%s) = %v, want %v", u, a.GivesAway(u), toD(u))
		}
	}
	if may, err := d.MayTake(ctx, &owner); err != nil || may {
		t.Fatalf("MayTake(a at its epoch) = %v %v: a view frees loops by their UIDs only", may, err)
	}

	var l coordinationv1.Lease
	key := client.ObjectKey{Namespace: "gov", Name: LeasePrefix + "a"}
	for _, bad := range []string{"2:a,d", "x:a,d", "1:", "a,d", ""} {
		must(t, c.Get(ctx, key, &l))
		metav1.SetMetaDataAnnotation(&l.ObjectMeta, ViewAnnotation, bad)
		must(t, c.Update(ctx, &l), d.list(ctx))
		check(fmt.Sprintf("view %q", bad), none)
	}

	// a renews past its Lease's expiry: a new epoch, which publishes no
	// view until a rebalance does.
	a.mu.Lock()
	a.renewed = time.Now().Add(-time.Minute)
	a.mu.Unlock()
	must(t, a.renew(ctx), c.Get(ctx, key, &l))
	if got, ok := l.Annotations[ViewAnnotation]; ok {
		t.Fatalf("a's new epoch %d carries the view %q of its old", ptr.Deref(l.Spec.LeaseTransitions, 0), got)
	}
	for _, u := range uids(200) {
		if a.GivesAway(u) {
			t.Fatalf("a gives %s away under a new epoch with no view published", u)
		}
	}
	a.Publish(a.Members(), "")
	must(t, a.renew(ctx), c.Get(ctx, key, &l))
	if got, want := l.Annotations[ViewAnnotation], "2:a,d"; got != want {
		t.Fatalf("a's view = %q, want %q", got, want)
	}
}

// watchedMember runs a member named name with a retry period of an hour on
// c, counting its listings, and returns once its watch of the Leases is
// open: any round after the first is one the watch (or a Publish) started.
func watchedMember(t *testing.T, c client.WithWatch, name string, lists *atomic.Int32, log logr.Logger) *Member {
	t.Helper()
	watching := make(chan struct{}, 1)
	wc := interceptor.NewClient(c, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, list, opts...)
		},
		Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
			w, err := c.Watch(ctx, list, opts...)
			watching <- struct{}{}
			return w, err
		},
	})
	// Rounds, expiries and deadlines an hour apart: none within the test.
	m := NewMember(wc, "gov", name, Timings{LeaseDuration: time.Hour, RenewDeadline: time.Hour, RetryPeriod: time.Hour}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s opened no watch of the Leases", name)
	}
	return m
}

// waitFor polls cond for 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A member lists the members at once, not at its next round, when a
// watched Lease shows a member joining, publishing a view, or releasing
// its Lease; a renewal alone starts no round. A member whose view changes
// writes it at once.
func TestWatchedLeasesStartARoundOnEveryChangeThatMovesLoops(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	var aLists, dLists atomic.Int32
	a := watchedMember(t, c, "a", &aLists, logr.Discard())
	d := watchedMember(t, c, "d", &dLists, logr.Discard())
	waitFor(t, "a lists d, which joined", func() bool { return fmt.Sprint(a.Members()) == "[a d]" })

	// d's renewal, with nothing else changed, is no reason for a round.
	ctx := context.Background()
	before := aLists.Load()
	must(t, d.renew(ctx))
	time.Sleep(200 * time.Millisecond)
	if n := aLists.Load() - before; n != 0 {
		t.Fatalf("a listed the members %d times after d's renewal alone, want 0", n)
	}

	// a publishes the view d joined under (a's runners of d's loops
	// stopped): a's Lease carries it at once, and d takes those loops.
	waitFor(t, "d lists a", func() bool { return fmt.Sprint(d.Members()) == "[a d]" })
	a.Publish(a.Members(), "")
	self, _ := a.Self()
	var given string
	for _, u := range uids(50) {
		if Assign(u, []string{"a", "d"}) == "d" {
			given = u
			break
		}
	}
	waitFor(t, "d frees a loop a's published view gives it", func() bool { return d.Free(given, &self) })
	// Published again unchanged, the view needs no round.
	before = aLists.Load()
	a.Publish(a.Members(), "")
	time.Sleep(200 * time.Millisecond)
	if n := aLists.Load() - before; n != 0 {
		t.Fatalf("a's unchanged view started %d rounds, want 0", n)
	}

	must(t, d.Release(ctx))
	waitFor(t, "a lists d gone, which released its Lease", func() bool { return fmt.Sprint(a.Members()) == "[a]" })
}

// A listing whose members changed is logged, with what started its round:
// a membership change is read from the replicas' logs.
func TestMembershipChangesAreLogged(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	var mu sync.Mutex
	var changes []string
	log := funcr.New(func(prefix, args string) {
		if strings.Contains(args, `"members changed"`) {
			mu.Lock()
			changes = append(changes, args)
			mu.Unlock()
		}
	}, funcr.Options{})
	logged := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(changes)
	}
	var lists atomic.Int32
	a := watchedMember(t, c, "a", &lists, log)
	waitFor(t, "a logs itself joined", func() bool { return len(logged()) == 1 })
	assert.Contains(t, logged()[0], `"members"=["a"] "round"="start"`)

	d := NewMember(c, "gov", "d", Timings{LeaseDuration: time.Hour, RenewDeadline: time.Hour, RetryPeriod: time.Hour}, logr.Discard())
	joined := time.Now()
	must(t, d.renew(context.Background()))
	waitFor(t, "a logs d joined", func() bool { return len(logged()) == 2 })
	assert.Contains(t, logged()[1], `"members"=["a" "d"] "round"="a watched change"`)
	assert.True(t, a.Listed().After(joined), "the listing that showed d is dated %v, before d's Lease was written", a.Listed())

	must(t, d.renew(context.Background())) // a renewal alone changes no member
	must(t, d.Release(context.Background()))
	waitFor(t, "a logs d left", func() bool { return len(logged()) == 3 })
	assert.Contains(t, logged()[2], `"members"=["a"] "round"="a watched change"`)
	assert.Equal(t, "[a]", fmt.Sprint(a.Members()))
}

// A published view names the version its member's writes had landed by,
// as it was when the view changed: later versions published with the same
// view do not replace it (they are of loops the member keeps), a new view
// names its own, and another member reads it for that member's epoch only.
func TestPublishedViewNamesTheVersionItsWritesLandedBy(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).Build()
	a, d := newMember(c, "a"), newMember(c, "d")
	must(t, a.renew(ctx), d.renew(ctx), a.list(ctx), d.list(ctx))
	owner := &Owner{Member: "a", Epoch: 1}
	written := func() string {
		t.Helper()
		must(t, a.renew(ctx), d.list(ctx))
		var l coordinationv1.Lease
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "gov", Name: LeasePrefix + "a"}, &l))
		if got := d.ViewWritten(owner); got != l.Annotations[ViewWrittenAnnotation] {
			t.Fatalf("ViewWritten = %q, the Lease says %q", got, l.Annotations[ViewWrittenAnnotation])
		}
		return d.ViewWritten(owner)
	}
	if got := written(); got != "" {
		t.Fatalf("no view published, yet ViewWritten = %q", got)
	}
	a.Publish(a.Members(), "41")
	if got := written(); got != "41" {
		t.Fatalf("ViewWritten = %q, want 41", got)
	}
	a.Publish(a.Members(), "57")
	if got := written(); got != "41" {
		t.Fatalf("the same view published again moved ViewWritten to %q", got)
	}
	a.Publish([]string{"a"}, "60")
	if got := written(); got != "60" {
		t.Fatalf("a new view's ViewWritten = %q, want 60", got)
	}
	if got := d.ViewWritten(&Owner{Member: "a", Epoch: 2}); got != "" {
		t.Fatalf("ViewWritten of another epoch = %q", got)
	}
}
