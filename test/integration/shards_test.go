//go:build integration

package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/shard"
)

// shardedLoops is how many loops TestShards runs, at shardedInterval.
const (
	shardedLoops    = 24
	shardedInterval = 500 * time.Millisecond
)

// TestShards runs governor binaries with --shards auto as config/default
// deploys them, and dozens of loops: three replicas share them; SIGKILL of
// one, a fourth joining, and one suspended (SIGSTOP) past its lease and
// resumed. Every loop goes on ticking, each replica runs a share, and no
// loop is ever run by two replicas at once: its history, as recorded all
// along, never has two entries with one tick number, nor two ticks closer
// than its minInterval.
func TestShards(t *testing.T) {
	// The Deployment's lease timings: shorter ones make replicas of this
	// loaded machine miss their renew deadline.
	timings := leaseTimings{lease: 8 * time.Second, renew: 6 * time.Second, retry: 500 * time.Millisecond}
	r := newFailoverRig(t, nil) // the manifest's --shards=auto
	ctx := context.Background()
	for i := range shardedLoops {
		var base v1alpha1.ControlLoop
		require.NoError(t, r.c.Get(ctx, client.ObjectKey{Namespace: "plant", Name: "scaling"}, &base))
		l := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "plant", Name: fmt.Sprintf("sharded-%02d", i)}, Spec: base.Spec}
		l.Spec.Interval = metav1.Duration{Duration: shardedInterval}
		require.NoError(t, r.c.Create(ctx, l))
	}
	rec := recordAllTicks(t, r)

	a, b, c := r.start(t, "a"), r.start(t, "b"), r.start(t, "c")
	since := time.Now()
	rec.waitAllTick(t, r, since, "every loop ticking on three replicas")
	time.Sleep(3 * time.Second) // the three see each other and rebalance
	balanced := time.Now()
	rec.waitAllTick(t, r, balanced, "every loop ticking, balanced")
	shares := rec.shares(balanced)
	t.Logf("loops run by each of three replicas: %v", shares)
	for _, p := range []*replica{a, b, c} {
		assert.Positive(t, shares[p.name], "replica %s runs no loop", p.name)
	}

	killed := time.Now()
	a.kill(t)
	rec.waitAllTick(t, r, killed.Add(timings.lease), "every loop ticking after a's SIGKILL")
	t.Logf("SIGKILL of a → every loop ticked again within %s", time.Since(killed).Round(time.Millisecond))

	joined := time.Now()
	d := r.start(t, "d")
	d.waitReady(t)
	r.waitFor(t, 30*time.Second, "d running a share", func() bool { return rec.shares(joined)["d"] > 0 })
	rec.waitAllTick(t, r, time.Now(), "every loop ticking after d joined")

	// b suspended past its lease: the others take its loops; once resumed,
	// it must not tick them before it has stopped, and takes its share back.
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGSTOP))
	stopped := time.Now()
	time.Sleep(timings.lease + 2*time.Second)
	rec.waitAllTick(t, r, stopped.Add(timings.lease), "every loop ticking while b is suspended")
	require.NoError(t, b.cmd.Process.Signal(syscall.SIGCONT))
	resumed := time.Now()
	// There is no leader: b, resumed, goes on with a new epoch and takes its
	// share back, without exiting.
	r.waitFor(t, 60*time.Second, "b running a share again", func() bool {
		select {
		case <-b.done:
			t.Fatalf("b exited on resume: %v\n%s", b.err, b.output(t))
		default:
		}
		return rec.shares(resumed)["b"] > 0
	})
	rec.waitAllTick(t, r, time.Now(), "every loop ticking after b resumed")

	// Each loop ends where rendezvous hashing over the live members puts
	// it.
	live := []string{"b", "c", "d"}
	misplaced := func() []string {
		var loops v1alpha1.ControlLoopList
		require.NoError(t, r.c.List(ctx, &loops, client.InNamespace("plant")))
		var out []string
		for _, l := range loops.Items {
			if o := l.Status.Owner; o == nil || o.Member != shard.Assign(string(l.UID), live) {
				out = append(out, fmt.Sprintf("%s (owner %v, assigned %s)", l.Name, o, shard.Assign(string(l.UID), live)))
			}
		}
		return out
	}
	r.waitFor(t, 60*time.Second, "every loop owned by its assigned replica", func() bool { return len(misplaced()) == 0 })
	rec.waitAllTick(t, r, time.Now(), "every loop ticking at the end")
	time.Sleep(2 * time.Second) // what was written around the handovers is recorded

	rec.check(t)
	for _, p := range []*replica{b, c, d} {
		assert.NotContains(t, p.output(t), "forbidden", "replica %s", p.name)
	}
}

// tickRecord is every history entry of every loop in namespace plant, as
// read every 100ms.
type tickRecord struct {
	mu      sync.Mutex
	entries map[string]map[time.Time]v1alpha1.HistoryEntry // loop → by start
	minGap  map[string]time.Duration                       // loop → minInterval
}

func recordAllTicks(t *testing.T, r *failoverRig) *tickRecord {
	rec := &tickRecord{entries: map[string]map[time.Time]v1alpha1.HistoryEntry{}, minGap: map[string]time.Duration{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var loops v1alpha1.ControlLoopList
			if err := r.c.List(context.Background(), &loops, client.InNamespace("plant")); err == nil {
				rec.mu.Lock()
				for _, l := range loops.Items {
					m := rec.entries[l.Name]
					if m == nil {
						m = map[time.Time]v1alpha1.HistoryEntry{}
						rec.entries[l.Name] = m
					}
					for _, h := range l.Status.History {
						m[h.Time.Time] = h
					}
					rec.minGap[l.Name] = 50 * time.Millisecond // the CRD's default
					if l.Spec.MinInterval != nil {
						rec.minGap[l.Name] = l.Spec.MinInterval.Duration
					}
				}
				rec.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return rec
}

// replicaOf is the replica that ran a tick: its bundle's revision says so.
func replicaOf(h v1alpha1.HistoryEntry) string {
	_, rev, _ := strings.Cut(h.Revision, "@reactive-")
	return rev
}

// waitAllTick waits until every loop has a tick that started after since.
func (rec *tickRecord) waitAllTick(t *testing.T, r *failoverRig, since time.Time, what string) {
	t.Helper()
	r.waitFor(t, 90*time.Second, what, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.entries) < shardedLoops+1 {
			return false
		}
		for _, m := range rec.entries {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(m)), func(at time.Time) bool { return at.After(since) }) {
				return false
			}
		}
		return true
	})
}

// shares counts, by replica, the loops whose ticks since then it ran.
func (rec *tickRecord) shares(since time.Time) map[string]int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := map[string]int{}
	for _, m := range rec.entries {
		seen := map[string]bool{}
		for at, h := range m {
			if at.After(since) && !seen[replicaOf(h)] {
				seen[replicaOf(h)] = true
				out[replicaOf(h)]++
			}
		}
	}
	return out
}

// check fails the test when a loop's recorded history has two entries with
// one tick number, or two ticks closer than its minInterval: two runners.
func (rec *tickRecord) check(t *testing.T) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	total := 0
	for name, m := range rec.entries {
		ticks := slices.SortedFunc(maps.Values(m), func(a, b v1alpha1.HistoryEntry) int { return a.Time.Compare(b.Time.Time) })
		total += len(ticks)
		byTick := map[int64]v1alpha1.HistoryEntry{}
		for i, h := range ticks {
			if prev, ok := byTick[h.Tick]; ok {
				t.Errorf("loop %s: tick %d ran twice: at %s by %s and at %s by %s", name, h.Tick,
					prev.Time.Format(time.StampMicro), replicaOf(prev), h.Time.Format(time.StampMicro), replicaOf(h))
			}
			byTick[h.Tick] = h
			if i > 0 {
				if gap := h.Time.Sub(ticks[i-1].Time.Time); gap < rec.minGap[name] {
					t.Errorf("loop %s: ticks %d (%s) and %d (%s) %s apart, under minInterval %s", name,
						ticks[i-1].Tick, replicaOf(ticks[i-1]), h.Tick, replicaOf(h), gap, rec.minGap[name])
				}
			}
		}
	}
	t.Logf("%d ticks of %d loops checked", total, len(rec.entries))
}
