// Package shard divides loops among controller replicas: each replica holds
// a Lease of its own (a member), every replica lists the live members, and
// each loop goes to one member by rendezvous (highest-random-weight) hashing
// of its UID, so that a member joining or leaving moves about 1/N of them.
package shard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/internal/keyhash"
)

// LeasePrefix begins the name of every member's Lease.
const LeasePrefix = "governor-member-"

// ViewAnnotation is, on a member's Lease, the membership it has released
// its loops under: "<epoch>:<member>,<member>,...". Under that epoch the
// member runs no loop that rendezvous among those members assigns to
// another: its runners of them have stopped. Another member may take such
// a loop at once, its claim deferred to its first status write (Free),
// without waiting for the old owner's handover write of each loop: those
// writes, one per moved loop, took a joining member's share 14 s at the
// median and 28 s for the last of 2,500 loops on this machine's API
// server (BenchmarkShards, run H3), past the Lease's 8 s.
const ViewAnnotation = "governor.dev/view"

// ViewWrittenAnnotation is, beside a ViewAnnotation, the resourceVersion of
// the loops by which every status write of the runners its view stopped
// had landed: a member whose cache of the loops has seen that version
// holds those writes, and may take such a loop as cached (resourceVersions
// of one resource compare since Kubernetes 1.35, KEP-5504).
const ViewWrittenAnnotation = "governor.dev/view-written"

// Owner is who runs a loop: a member, and the epoch of its Lease (its
// leaseTransitions when it took the Lease). A member whose Lease expired
// comes back under a new epoch: what it ran under the old one has stopped.
type Owner struct {
	Member string
	Epoch  int64
}

// Assign is the member among members that a key (a loop's UID) goes to:
// the one with the highest hash of member and key. "" when there is none.
func Assign(key string, members []string) string {
	best, bestWeight := "", uint64(0)
	for _, m := range members {
		if w := weight(m, key); best == "" || w > bestWeight || (w == bestWeight && m < best) {
			best, bestWeight = m, w
		}
	}
	return best
}

func weight(member, key string) uint64 {
	return keyhash.Sum(member, key)
}

// Live is the live members among Leases read by a request sent at sent:
// each Lease named LeasePrefix+member, held, and renewed within its
// duration; ended are the others, at their last epoch. At the send time,
// not the answer's: a renewal that keeps its epoch was answered, so landed,
// before the Lease expired (renew), and a read sent after the expiry sees
// it; judged at the answer's time, a Lease renewed meanwhile was taken for
// expired.
func Live(leases []coordinationv1.Lease, sent time.Time) (live, ended map[string]Owner) {
	live, ended = map[string]Owner{}, map[string]Owner{}
	for _, l := range leases {
		member, ok := strings.CutPrefix(l.Name, LeasePrefix)
		if !ok {
			continue
		}
		o := Owner{Member: member, Epoch: int64(ptr.Deref(l.Spec.LeaseTransitions, 0))}
		if held(&l, sent) {
			live[member] = o
		} else {
			ended[member] = o
		}
	}
	return live, ended
}

// held says whether a Lease has a holder who renewed it within its duration.
func held(l *coordinationv1.Lease, now time.Time) bool {
	at := expiry(l)
	return !at.IsZero() && now.Before(at)
}

// expiry is when a Lease expires: a lease duration after its renewal; zero
// when it has no holder.
func expiry(l *coordinationv1.Lease) time.Time {
	s := l.Spec
	if ptr.Deref(s.HolderIdentity, "") == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return time.Time{}
	}
	return s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
}

// view is the membership a member released its loops under (ViewAnnotation).
type view struct {
	epoch   int64
	members []string
	written string // ViewWrittenAnnotation; "" when not known
}

func (v view) String() string {
	return fmt.Sprintf("%d:%s", v.epoch, strings.Join(v.members, ","))
}

// parseView reads a ViewAnnotation; false when it is absent or malformed.
func parseView(s string) (view, bool) {
	e, ms, ok := strings.Cut(s, ":")
	if !ok || ms == "" {
		return view{}, false
	}
	epoch, err := strconv.ParseInt(e, 10, 64)
	if err != nil || epoch <= 0 {
		return view{}, false
	}
	return view{epoch: epoch, members: strings.Split(ms, ",")}, true
}

// releases says whether a member o, which published v, runs no loop of
// this UID: v is of o's epoch, and rendezvous among v's members assigns
// the loop to another.
func (v view) releases(uid string, o Owner) bool {
	return v.epoch == o.Epoch && len(v.members) > 0 && Assign(uid, v.members) != o.Member
}

// Timings are a member's Lease timings, as leader election's: others take
// the member for gone LeaseDuration after its last renewal; it stops acting
// itself when it could not renew for RenewDeadline (and acts again, under
// the same epoch, if it renews before LeaseDuration); it renews every
// RetryPeriod.
type Timings struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Member is this replica's membership: its Lease, renewed, and the live
// members as last listed.
type Member struct {
	Client    client.WithWatch
	Namespace string
	Name      string // the member (the pod's name); its Lease is LeasePrefix+Name
	Timings   Timings
	Log       logr.Logger

	identity string // Name and a nonce: a restarted process waits for its old Lease to expire

	mu        sync.Mutex
	epoch     int64     // 0 until the Lease is held
	renewed   time.Time // when the last successful renewal was sent
	members   map[string]Owner
	ended     map[string]Owner // members whose Lease had expired or was released
	sortedIDs []string
	views     map[string]view // the live members' published views
	// published is this member's view to publish (Publish), under the
	// epoch it was established in.
	published view
	// firstExpiry is when the first other live member's Lease expires,
	// as last listed; zero when there is none.
	firstExpiry time.Time
	// wake asks Run for a round now: this member's view changed
	// (Publish), or a watched Lease shows a change the last listing does
	// not (changed).
	wake chan struct{}
	// listedVersion is the last listing's resource version, and listedAt
	// when its answer came.
	listedVersion string
	listedAt      time.Time
}

// NewMember is a member named name, with its Lease in namespace.
func NewMember(c client.WithWatch, namespace, name string, t Timings, log logr.Logger) *Member {
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	return &Member{Client: c, Namespace: namespace, Name: name, Timings: t, Log: log,
		identity: name + "_" + hex.EncodeToString(nonce[:]), wake: make(chan struct{}, 1)}
}

// Self is this member as an owner; false while it does not hold its Lease
// or could not renew it within the renew deadline: it must not act then.
func (m *Member) Self() (Owner, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Owner{Member: m.Name, Epoch: m.epoch}, m.epoch > 0 && time.Since(m.renewed) < m.Timings.RenewDeadline
}

// Owns says whether a loop of this UID is this member's to run now.
func (m *Member) Owns(uid string) bool {
	if _, ok := m.Self(); !ok {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return Assign(uid, m.sortedIDs) == m.Name
}

// MayTake says whether this member may take a loop recorded as owned by o:
// nobody, itself (under any epoch: one process runs one runner per loop,
// and its runners of an older epoch stopped acting when it lapsed), a
// member whose Lease expired, or a live member under a newer epoch (whose
// runners of the recorded one stopped). The last listing answers when what
// it saw of o lasts (an epoch that ended stays ended) or says o was live;
// otherwise o's Lease is read from the API server: a member that joined
// since the last listing is live too.
func (m *Member) MayTake(ctx context.Context, o *Owner) (bool, error) {
	if o == nil || o.Member == "" || o.Member == m.Name {
		return true, nil
	}
	if may, known := m.listed("", *o); known {
		return may, nil
	}
	var l coordinationv1.Lease
	sent := time.Now()
	err := m.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: LeasePrefix + o.Member}, &l)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, err
	}
	live, _ := Live([]coordinationv1.Lease{l}, sent)
	owner, ok := live[o.Member]
	return !ok || owner.Epoch != o.Epoch, nil
}

// HeldElsewhere says whether the last listing had o, another member, live
// under its epoch, running the loop of this UID (no request is sent): the
// loop is not this member's to take until o hands it on, publishes a view
// that gives the loop to another, or the listing sees o's epoch end.
func (m *Member) HeldElsewhere(uid string, o *Owner) bool {
	if o == nil || o.Member == "" || o.Member == m.Name {
		return false
	}
	may, known := m.listed(uid, *o)
	return known && !may
}

// Free says, without a request, whether the loop of this UID, recorded as
// run by o, may be taken with no claim written first: none is recorded,
// the last listing saw o's epoch end (or a newer epoch of o live, whose
// runners of o's epoch have stopped), or o, live, published a view under
// its epoch that gives the loop to another (ViewAnnotation: o has stopped
// its runner, and its handover write may not have landed yet). A runner of such a loop may tick at once, its
// first status write claiming the loop (that write is conditional like a
// claim): a failover's thousands of claims, written one by one before the
// loops ticked, took 30 s at the median on this machine's API server
// (BenchmarkShards, run H).
func (m *Member) Free(uid string, o *Owner) bool {
	if o == nil || o.Member == "" {
		return true
	}
	may, known := m.listed(uid, *o)
	return known && may
}

// listed is MayTake as the last listing answers it for the loop of this
// UID ("": any loop), if it can (known): o's epoch had ended, or a newer
// epoch of o was live (its runners of o's epoch stopped), or o's published
// view gives the loop to another (uid given): yes; o was live under its
// epoch otherwise: no (the next listing tells whether it still is). A
// failover's claims took a read of the old owner's Lease each, as slow as
// the claim itself on a busy API server (BenchmarkShards).
func (m *Member) listed(uid string, o Owner) (may, known bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.ended[o.Member]; ok && o.Epoch <= e.Epoch {
		return true, true
	}
	if l, ok := m.members[o.Member]; ok && o.Epoch <= l.Epoch {
		return o.Epoch < l.Epoch || (uid != "" && m.views[o.Member].releases(uid, o)), true
	}
	return false, false
}

// Successor is the live member, other than this one, that a loop of this
// UID goes to when this one hands it on (rendezvous among the others, as
// last listed): the owner it is assigned to, whether this one is leaving
// or the loop moved to a member that joined.
func (m *Member) Successor(uid string) (Owner, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	others := make([]string, 0, len(m.sortedIDs))
	for _, id := range m.sortedIDs {
		if id != m.Name {
			others = append(others, id)
		}
	}
	o, ok := m.members[Assign(uid, others)]
	return o, ok
}

// GivesAway says whether this member's published view, under its epoch,
// gives the loop of this UID to another member: others may take it
// without this member writing anything of it.
func (m *Member) GivesAway(uid string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch > 0 && m.published.releases(uid, Owner{Member: m.Name, Epoch: m.epoch})
}

// Members are the live members as last listed, sorted.
func (m *Member) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.sortedIDs)
}

// Publish has this member's next renewals say, in its Lease, that it runs
// no loop which rendezvous among members (a view of the membership, this
// member among them) assigns to another (ViewAnnotation): call it once the
// runners of every such loop have stopped. The view holds for the epoch it
// is published in; a new epoch publishes none until Publish is called
// again. Others believe it only to take loops sooner: whoever runs a loop,
// its writes are conditional on the status it read, so of two runners
// that both believe the loop theirs (views listed at different times) only
// one's write lands, and neither acts before its write.
//
// written is the resourceVersion of the loops by which the stopped
// runners' writes had landed (ViewWrittenAnnotation; "" if not known): it
// stays as long as the view does (a later one, published with the same
// view, is of writes of loops the member keeps).
//
// A view that changes is written at once, by a round of its own: the loops
// it gives away wait for it.
func (m *Member) Publish(members []string, written string) {
	m.mu.Lock()
	v := view{epoch: m.epoch, members: slices.Clone(members), written: written}
	changed := v.String() != m.published.String()
	if changed {
		// written is kept with its view: the writes a view waited for do
		// not change with later ones (of the loops the member keeps).
		m.published = v
	}
	m.mu.Unlock()
	if changed {
		m.roundNow()
	}
}

// roundNow has Run start a round without waiting for its retry period.
func (m *Member) roundNow() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run holds the member's Lease and lists the members every RetryPeriod
// until ctx ends; then it releases the Lease (call it once runners have
// stopped). onRenew runs after each round, for the caller to rebalance.
// Between rounds it watches the Leases: a member that joins, leaves or
// publishes a view starts a round at once, so a joining member's share
// moves within the API server's latency, not a retry period or two. The
// rounds' listings alone decide who is live; the watch only wakes them
// (and without it, forbidden or failing, the rounds go on as they are).
func (m *Member) Run(ctx context.Context, onRenew func()) error {
	ticker := time.NewTicker(m.Timings.RetryPeriod)
	defer ticker.Stop()
	var watching sync.WaitGroup
	defer watching.Wait() // the watch ends with ctx; Run returns after it
	why := "start"
	for first := true; ; first = false {
		m.round(ctx, why)
		if ctx.Err() == nil && onRenew != nil {
			onRenew()
		}
		if first {
			// After the first listing: the watch compares its events
			// with what the rounds listed.
			watching.Add(1)
			go func() {
				defer watching.Done()
				m.watch(ctx)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			why = "retry period"
		case <-m.expiry():
			why = "a Lease's expiry"
		case <-m.wake:
			why = "a watched change"
		}
	}
}

// watch watches the members' Leases until ctx ends, starting a round
// (roundNow) whenever one shows a change the last listing does not
// (changed), from the last listing's resource version (the events after
// it); a watch that fails or ends is started again a retry period later,
// from the listing then.
func (m *Member) watch(ctx context.Context) {
	for {
		m.mu.Lock()
		since := m.listedVersion
		m.mu.Unlock()
		w, err := m.Client.Watch(ctx, &coordinationv1.LeaseList{}, &client.ListOptions{Namespace: m.Namespace,
			Raw: &metav1.ListOptions{ResourceVersion: since}})
		if err == nil {
			err = m.follow(ctx, w)
		}
		if err != nil && ctx.Err() == nil {
			m.Log.Error(err, "watching member Leases (the members are listed every retry period)")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.Timings.RetryPeriod):
		}
	}
}

// follow reads a watch's events until it or ctx ends, starting a round at
// each change; the error event that ends a watch (its resource version
// too old) is returned.
func (m *Member) follow(ctx context.Context, w watch.Interface) error {
	defer w.Stop()
	for {
		var ev watch.Event
		var open bool
		select {
		case <-ctx.Done():
			return nil
		case ev, open = <-w.ResultChan():
		}
		if !open {
			return nil
		}
		switch l, ok := ev.Object.(*coordinationv1.Lease); {
		case ev.Type == watch.Error:
			return apierrors.FromObject(ev.Object)
		case ok && m.changed(l, ev.Type == watch.Deleted):
			m.Log.Info("member Lease changed", "lease", l.Name, "event", ev.Type)
			m.roundNow()
		}
	}
}

// changed says whether another member's Lease, as a watch event has it,
// differs from the last listing in what moves loops: whether it is held,
// its epoch, its published view. A renewal alone changes none of them;
// an expiry, which no event shows, is Run's to see (expiry).
func (m *Member) changed(l *coordinationv1.Lease, deleted bool) bool {
	member, ok := strings.CutPrefix(l.Name, LeasePrefix)
	if !ok || member == m.Name {
		return false
	}
	heldNow := !deleted && ptr.Deref(l.Spec.HolderIdentity, "") != ""
	epoch := int64(ptr.Deref(l.Spec.LeaseTransitions, 0))
	v, _ := parseView(l.Annotations[ViewAnnotation])
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, live := m.members[member]; live {
		return !heldNow || epoch != o.Epoch || v.String() != m.views[member].String()
	}
	// Not live as listed (ended, or unknown): held now, it joined or
	// came back.
	return heldNow
}

// expiry fires when the first other member's Lease expires, as last
// listed, if that comes before the next round: a member that stopped
// renewing is seen gone then, and its loops taken, not up to a retry
// period later. It never fires for an expiry already past (the round after
// it saw it, or its listing failed: the ticker paces the retries); nil,
// which never fires, when there is none to wait for.
func (m *Member) expiry() <-chan time.Time {
	m.mu.Lock()
	first := m.firstExpiry
	m.mu.Unlock()
	wait := time.Until(first)
	if first.IsZero() || wait <= 0 || wait >= m.Timings.RetryPeriod {
		return nil
	}
	return time.After(wait + time.Millisecond) // a listing sent at the expiry sees it expired
}

// round renews the Lease and lists the members, for at most a lease
// duration: a request that hangs longer (a connection lost without a word)
// could no longer keep the epoch, and must not hold the next round back.
// A listing whose members differ from the last one's is logged, with what
// started the round and how long its requests took: a membership change
// is read from the replicas' logs.
func (m *Member) round(ctx context.Context, why string) {
	roundCtx, cancel := context.WithTimeout(ctx, m.Timings.LeaseDuration)
	defer cancel()
	begun := time.Now()
	if err := m.renew(roundCtx); err != nil && ctx.Err() == nil {
		m.Log.Error(err, "renewing the member Lease")
	}
	renewed := time.Now()
	before := m.Members()
	if err := m.list(roundCtx); err != nil && ctx.Err() == nil {
		m.Log.Error(err, "listing member Leases")
	}
	if now := m.Members(); !slices.Equal(now, before) {
		m.Log.Info("members changed", "members", now, "round", why,
			"renewal", renewed.Sub(begun).Seconds(), "listing", time.Since(renewed).Seconds())
	}
}

// Release hands the Lease back, so that others need not wait for it to
// expire: call it once this member's runners have stopped.
func (m *Member) Release(ctx context.Context) error {
	m.mu.Lock()
	m.epoch = 0
	m.mu.Unlock()
	var l coordinationv1.Lease
	if err := m.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: LeasePrefix + m.Name}, &l); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != m.identity {
		return nil
	}
	l.Spec.HolderIdentity = nil
	l.Spec.RenewTime = nil
	return m.Client.Update(ctx, &l)
}

// renew takes or renews the Lease. A Lease another process holds (an older
// process of the same pod) is waited for until it expires; a renewal that
// did not land before this member's Lease expired starts a new epoch.
func (m *Member) renew(ctx context.Context) error {
	sent := time.Now()
	key := client.ObjectKey{Namespace: m.Namespace, Name: LeasePrefix + m.Name}
	var l coordinationv1.Lease
	err := m.Client.Get(ctx, key, &l)
	if apierrors.IsNotFound(err) {
		l = coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: key.Name}}
		m.stamp(&l, sent, 1)
		if err := m.Client.Create(ctx, &l); err != nil {
			return err
		}
		m.renewedAt(sent, 1)
		return nil
	}
	if err != nil {
		return err
	}
	holder := ptr.Deref(l.Spec.HolderIdentity, "")
	if holder != m.identity && holder != "" && held(&l, sent) {
		return fmt.Errorf("lease %s held by %s (an older process?) until it expires", key.Name, holder)
	}
	epoch := int64(ptr.Deref(l.Spec.LeaseTransitions, 0))
	m.mu.Lock()
	expires := m.renewed.Add(m.Timings.LeaseDuration)
	// Past the renew deadline but before the Lease expired, no other
	// member can have taken this one's loops: it goes on under its epoch,
	// and its runners, which waited, resume without claiming them again.
	goesOn := m.epoch > 0 && epoch == m.epoch && holder == m.identity && sent.Before(expires)
	m.mu.Unlock()
	if !goesOn {
		epoch++
	}
	m.stamp(&l, sent, epoch)
	if err := m.Client.Update(ctx, &l); err != nil {
		return err
	}
	if goesOn && !time.Now().Before(expires) {
		// It may have landed after others saw the Lease expire and took
		// its loops: the epoch is not renewed, the next renewal starts a
		// new one.
		return fmt.Errorf("lease %s renewed after it expired: taking a new epoch", key.Name)
	}
	m.renewedAt(sent, epoch)
	return nil
}

func (m *Member) stamp(l *coordinationv1.Lease, now time.Time, epoch int64) {
	l.Spec.HolderIdentity = ptr.To(m.identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(m.Timings.LeaseDuration / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: now}
	if int64(ptr.Deref(l.Spec.LeaseTransitions, 0)) != epoch || l.Spec.AcquireTime == nil {
		l.Spec.AcquireTime = &metav1.MicroTime{Time: now}
	}
	l.Spec.LeaseTransitions = ptr.To(int32(epoch))
	m.mu.Lock()
	v := m.published
	m.mu.Unlock()
	delete(l.Annotations, ViewWrittenAnnotation)
	if v.epoch == epoch && len(v.members) > 0 {
		metav1.SetMetaDataAnnotation(&l.ObjectMeta, ViewAnnotation, v.String())
		if v.written != "" {
			metav1.SetMetaDataAnnotation(&l.ObjectMeta, ViewWrittenAnnotation, v.written)
		}
	} else {
		delete(l.Annotations, ViewAnnotation)
	}
}

func (m *Member) renewedAt(sent time.Time, epoch int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if epoch != m.epoch {
		m.Log.Info("member Lease taken", "member", m.Name, "epoch", epoch)
	}
	m.epoch, m.renewed = epoch, sent
}

func (m *Member) list(ctx context.Context) error {
	var leases coordinationv1.LeaseList
	sent := time.Now()
	if err := m.Client.List(ctx, &leases, client.InNamespace(m.Namespace)); err != nil {
		return err
	}
	live, ended := Live(leases.Items, sent)
	var first time.Time
	views := map[string]view{}
	for _, l := range leases.Items {
		member, ok := strings.CutPrefix(l.Name, LeasePrefix)
		if _, live := live[member]; !ok || !live || member == m.Name {
			continue
		}
		if v, ok := parseView(l.Annotations[ViewAnnotation]); ok {
			v.written = l.Annotations[ViewWrittenAnnotation]
			views[member] = v
		}
		if at := expiry(&l); first.IsZero() || at.Before(first) {
			first = at
		}
	}
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members, m.ended, m.sortedIDs, m.firstExpiry, m.views = live, ended, ids, first, views
	m.listedVersion, m.listedAt = leases.ResourceVersion, time.Now()
	return nil
}

// ViewWritten is the ViewWrittenAnnotation of the view o published under
// its epoch, as last listed ("": none, or not known).
func (m *Member) ViewWritten(o *Owner) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o == nil {
		return ""
	}
	if v := m.views[o.Member]; v.epoch == o.Epoch {
		return v.written
	}
	return ""
}

// Listed is when the answer of the last listing of the members came: what
// it showed (a view, and what its member wrote before it) had landed by
// then, and a request sent after it sees that.
func (m *Member) Listed() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.listedAt
}
