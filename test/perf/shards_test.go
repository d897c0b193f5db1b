//go:build integration && linux

package perf

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/shard"
	"governor.dev/governor/test/deployed"
)

// BenchmarkShards runs replicas of the deployed binary sharing N loops
// (the manifest's --shards=auto, each replica a member of its own,
// --shard-member=rK), each loop on the shipped bandwidth bundle with one of
// 10 Deployments as its target and a jitter in the hold band, on one
// cluster, in this order:
//
//  1. three replicas: a steady window (scale, 3 replicas);
//  2. failover: SIGKILL of r3; for each loop r3 owned, the time from the
//     kill to its first tick by another replica (against the lease
//     duration plus one interval; a runner taking a loop ticks it at once,
//     so the time does not grow with the interval);
//  3. r3 started again (as its Deployment would), then rebalance: r4 joins;
//     the share it takes (against the loops rendezvous hashing assigns
//     it), from its member Lease's acquisition (and from the Lease's
//     creation, r4's log) to each of those loops' first tick by r4, the
//     longest any loop went without a recorded tick, and each moved loop's
//     wait from its last tick by its old owner (the old owners' logs: the
//     rebalance that stopped its runner, and how long its runners had gone
//     without a tick then; quiet ticks are in no history until flushed) to
//     its first by r4;
//  4. r4, r3, then r2 stopped gracefully: steady windows with 3, 2 and 1
//     replicas.
//
// A steady window (30s, or one interval if longer) reports the loops each replica runs, its CPU
// (/proc) and peak RSS, the ticks per second against demand, the tick lag
// (a tick's start against its predecessor's plus the interval), and the
// API server's and etcd's CPU. Every replica runs its own copy of the
// shipped policies, whose bandwidth revision names it (bandwidth-rK), so a
// tick in status.history says which replica ran it; the benchmark lists
// the loops every 5s (a sixth of the interval if longer, up to 30s) and
// keeps every tick it saw; at the end it fails if any loop's history had
// two ticks of one number or two ticks closer than minInterval (a loop run
// twice).
//
// PERF_SHARD_LOOPS is N (default 600, the issue's), PERF_SHARD_INTERVAL
// the loops' interval (default 1s; the 10,000 loops at 1s are ten
// times the status writes this machine's API server takes, so they run
// here at a longer one), PERF_SHARD_FLUSH a --status-flush-interval for
// every replica (default: the manifest's), PERF_KEEP_LOGS a directory the
// replicas' logs are copied to at the end (rK-hhmmss.log, by start).
// Figures are logged as soon as
// they are measured (a run that fails later keeps them) and reported at
// the end.
func BenchmarkShards(b *testing.B) {
	n := 600
	if env := os.Getenv("PERF_SHARD_LOOPS"); env != "" {
		var err error
		if n, err = strconv.Atoi(env); err != nil || n < 1 {
			b.Fatalf("PERF_SHARD_LOOPS=%q: want a number of loops", env)
		}
	}
	interval := time.Second
	if env := os.Getenv("PERF_SHARD_INTERVAL"); env != "" {
		var err error
		if interval, err = time.ParseDuration(env); err != nil || interval < time.Second {
			b.Fatalf("PERF_SHARD_INTERVAL=%q: want an interval of 1s or more", env)
		}
	}
	var extra []string
	flush := "manifest"
	if env := os.Getenv("PERF_SHARD_FLUSH"); env != "" {
		extra = append(extra, "--status-flush-interval="+env)
		flush = env
	}
	b.Run(fmt.Sprintf("loops=%d/interval=%s/flush=%s", n, interval, flush), func(b *testing.B) {
		for range b.N {
			shards(b, n, interval, extra)
		}
	})
}

func shards(b *testing.B, n int, interval time.Duration, extra []string) {
	d := deploy(b)
	if v, _ := deployed.ArgValue(d.Args, "--shards"); v != "auto" {
		b.Fatalf("config/default's manager runs --shards=%q: BenchmarkShards measures --shards=auto", v)
	}
	s := &shardRun{d: d, n: n, interval: interval, extra: extra, replicas: map[string]*governor{}, timings: leaseTimings(b, d.Args),
		// Up to a minute for every 2,000 loops (a whole share moving).
		patience: max(3*time.Minute, time.Duration(n)*30*time.Millisecond)}
	s.ns = d.newNamespace(b, "shards")
	targets := make([]string, 10)
	for i := range targets {
		targets[i] = fmt.Sprintf("t%02d", i)
	}
	d.workloads(b, s.ns, targets, 1)
	flush := statusFlush(b, append(slices.Clone(d.Args), extra...))
	// Every tick stays in the history until the recorder has read it.
	every := min(max(5*time.Second, interval/6), 30*time.Second)
	limit := int32(max(30, (flush+3*every)/interval))

	for _, m := range []string{"r1", "r2", "r3"} {
		s.start(b, m)
	}
	// A tenth of the loops at a time (at least 100), each lot ticking
	// before the next is made.
	lot := max(100, n/10)
	for from := 0; from < n; from += lot {
		makeLoops(b, d, s.ns, from, min(from+lot, n), func(name string) *v1alpha1.ControlLoop {
			i, _ := strconv.Atoi(strings.TrimPrefix(name, "l"))
			return bandwidthLoop(s.ns, name, interval, 0, []string{targets[i%len(targets)]}, nil, limit)
		})
		s.waitTicked(b)
		b.Logf("%s: %d loops ticking", time.Now().Format(time.TimeOnly), min(from+lot, n))
	}
	pushAll(b, d, s.replicas["r1"], s.ns, n)
	s.rec = recordTicks(b, d, s.ns, interval, every)
	time.Sleep(10 * time.Second) // the pushes' ticks are behind

	s.steady(b, "3")
	s.failover(b, "r3")
	s.start(b, "r3")
	s.settle(b)
	s.rebalance(b, "r4")
	for _, m := range []string{"r4", "r3", "r2"} {
		s.stop(b, m)
		s.settle(b)
		if m != "r4" {
			s.steady(b, strconv.Itoa(len(s.replicas)))
		}
	}
	s.rec.checkOnce(b)
	for m, g := range s.replicas {
		if out := g.Output(); strings.Contains(out, "forbidden") {
			i := strings.Index(out, "forbidden")
			b.Errorf("replica %s met a forbidden: %s", m, out[max(0, i-200):min(len(out), i+200)])
		}
	}
}

// shardRun is one run of BenchmarkShards.
type shardRun struct {
	d        *deployment
	ns       string
	n        int           // loops
	interval time.Duration // the loops'
	patience time.Duration // for every loop to tick, or to be handed over
	extra    []string
	timings  shard.Timings
	replicas map[string]*governor // running, by member
	rec      *tickRecorder
}

// start runs a replica named member, with bundles of its own whose
// bandwidth revision names it, and waits until it is ready.
func (s *shardRun) start(b *testing.B, member string) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "policies")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repo, "policies"))); err != nil {
		b.Fatal(err)
	}
	deployed.StampRevision(b, filepath.Join(dir, "bandwidth"), "bandwidth-"+member)
	args := append([]string{"--bundles=" + dir, "--shard-member=" + member}, s.extra...)
	g := s.d.start(b, args...)
	s.replicas[member] = g
	if keep := os.Getenv("PERF_KEEP_LOGS"); keep != "" {
		// The replica's log goes with the benchmark's temporary directory.
		kept := filepath.Join(keep, member+"-"+time.Now().Format("150405")+".log")
		b.Cleanup(func() {
			if err := os.MkdirAll(keep, 0o755); err != nil {
				b.Error(err)
				return
			}
			log, err := os.ReadFile(g.Log)
			if err == nil {
				err = os.WriteFile(kept, log, 0o644)
			}
			if err != nil {
				b.Errorf("PERF_KEEP_LOGS: %v", err)
			}
		})
	}
}

// stop stops a replica gracefully (SIGTERM): its runners write their last
// ticks with no owner, and it hands its member Lease back.
func (s *shardRun) stop(b *testing.B, member string) {
	b.Helper()
	s.replicas[member].Stop(b)
	delete(s.replicas, member)
}

// check fails the benchmark when a replica has exited.
func (s *shardRun) check(b *testing.B) {
	b.Helper()
	for _, g := range s.replicas {
		g.Check(b)
	}
}

// waitTicked waits until every loop has ticked at least once.
func (s *shardRun) waitTicked(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(s.patience)
	for {
		s.check(b)
		list, err := listLoops(s.d.Admin, s.ns)
		if err != nil {
			b.Fatal(err)
		}
		behind := 0
		for _, l := range list.Items {
			if l.Status.Tick < 1 {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d loops never ticked after %s", behind, len(list.Items), s.patience)
		}
		time.Sleep(s.poll())
	}
}

// settle waits until every loop is owned by the member rendezvous hashing
// assigns it among the running replicas, and a lease duration more.
func (s *shardRun) settle(b *testing.B) {
	b.Helper()
	members := slices.Sorted(maps.Keys(s.replicas))
	deadline := time.Now().Add(s.patience)
	for {
		s.check(b)
		misplaced := 0
		for uid, owner := range s.owners(b) {
			if owner.member != shard.Assign(uid, members) {
				misplaced++
			}
		}
		if misplaced == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d loops not owned by their assigned replica (of %v) after %s", misplaced, members, s.patience)
		}
		time.Sleep(s.poll())
	}
	time.Sleep(s.timings.LeaseDuration)
}

// poll is how often the benchmark lists the loops while it waits for them:
// every second, or less often for thousands of loops, whose listing is
// itself a load on the API server.
func (s *shardRun) poll() time.Duration {
	return max(time.Second, time.Duration(s.n/1000)*time.Second)
}

// loopOwner is a loop's name and its recorded owner's member.
type loopOwner struct{ name, member string }

// owners are the loops' recorded owners, by UID.
func (s *shardRun) owners(b *testing.B) map[string]loopOwner {
	b.Helper()
	list, err := listLoops(s.d.Admin, s.ns)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]loopOwner{}
	for _, l := range list.Items {
		o := loopOwner{name: l.Name}
		if l.Status.Owner != nil {
			o.member = l.Status.Owner.Member
		}
		out[string(l.UID)] = o
	}
	return out
}

// steady measures a window of 30s, or one interval if longer (each loop's
// tick in it says which replica runs it), with the replicas running now.
func (s *shardRun) steady(b *testing.B, label string) {
	b.Helper()
	n, span := s.n, max(30*time.Second, s.interval)
	s.check(b)
	from, err := s.sampleCPU()
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(span)
	s.check(b)
	to, err := s.sampleCPU()
	if err != nil {
		b.Fatal(err)
	}
	// The window's ticks are in the statuses a flush later, and read at
	// the recorder's next round.
	time.Sleep(statusFlush(b, s.replicas[slices.Sorted(maps.Keys(s.replicas))[0]].Args) + 2*s.rec.every)
	ticks := s.rec.between(from.at, to.at)
	lags := s.rec.lags(from.at, to.at)
	perReplica := map[string]map[string]bool{}
	for _, t := range ticks {
		if perReplica[t.by] == nil {
			perReplica[t.by] = map[string]bool{}
		}
		perReplica[t.by][t.loop] = true
	}
	secs := to.at.Sub(from.at).Seconds()
	rate := float64(len(ticks)) / secs
	demand := float64(n) / s.interval.Seconds()
	if f := s.rec.listsFailed(); f > 0 {
		b.Logf("%d lists of the loops failed so far: ticks may be missing from the counts", f)
	}
	p := "replicas=" + label + "/"
	b.ReportMetric(rate/demand, p+"of-demand")
	b.ReportMetric(percentile(lags, 0.5), p+"lag-ms-p50")
	b.ReportMetric(percentile(lags, 0.99), p+"lag-ms-p99")
	b.ReportMetric(cores(from, to, "kube-apiserver"), p+"apiserver-cores")
	b.ReportMetric(cores(from, to, "etcd"), p+"etcd-cores")
	line := fmt.Sprintf("%d replicas, %d loops at %s: ticks/s %.1f (%.0f%% of demand), lag p50 %.1f ms p99 %.1f ms, kube-apiserver %.3f cores, etcd %.3f cores, machine %.2f busy cores",
		len(s.replicas), n, s.interval, rate, 100*rate/demand, percentile(lags, 0.5), percentile(lags, 0.99),
		cores(from, to, "kube-apiserver"), cores(from, to, "etcd"), (to.busy-from.busy).Seconds()/secs)
	for _, m := range slices.Sorted(maps.Keys(s.replicas)) {
		rss, err := peakRSS(s.replicas[m].Cmd.Process.Pid)
		if err != nil {
			s.check(b) // it exited meanwhile
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(perReplica["bandwidth-"+m])), p+m+"-loops")
		b.ReportMetric(cores(from, to, m), p+m+"-cores")
		b.ReportMetric(float64(rss)/(1<<20), p+m+"-peak-MiB")
		line += fmt.Sprintf("; %s: %d loops, %.3f cores, peak RSS %.0f MiB", m, len(perReplica["bandwidth-"+m]),
			cores(from, to, m), float64(rss)/(1<<20))
	}
	b.Logf("%s: %s", time.Now().Format(time.TimeOnly), line)
}

// sampleCPU reads the CPU time of every replica and of the control plane's
// components, and the machine's.
func (s *shardRun) sampleCPU() (sample, error) {
	out := sample{at: time.Now(), cpu: map[string]time.Duration{}}
	pids := components()
	for m, g := range s.replicas {
		pids[m] = g.Cmd.Process.Pid
	}
	for name, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return out, err
		}
		out.cpu[name] = t
	}
	var err error
	out.busy, err = machineBusy()
	return out, err
}

// failover SIGKILLs a replica and measures, for each loop it owned, the
// time from the kill to the loop's first tick by another replica.
func (s *shardRun) failover(b *testing.B, victim string) {
	b.Helper()
	var owned []string
	for _, o := range s.owners(b) {
		if o.member == victim {
			owned = append(owned, o.name)
		}
	}
	before := s.claimsOf(b)
	killed := time.Now()
	s.replicas[victim].Kill()
	delete(s.replicas, victim)
	var delays []time.Duration
	deadline := time.Now().Add(s.patience)
	for {
		s.check(b)
		delays = delays[:0]
		for _, loop := range owned {
			if t, ok := s.rec.firstAfter(loop, killed); ok {
				delays = append(delays, t.at.Sub(killed))
			}
		}
		if len(delays) == len(owned) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %s's %d loops not ticking %s after its SIGKILL", len(owned)-len(delays), victim, len(owned), s.patience)
		}
		time.Sleep(s.rec.every)
	}
	// A tick is seen once its status is written: a deferred claim's runner
	// ticks before (its history's time), and writes it later.
	written := time.Since(killed)
	sorted := sortedCopy(delays)
	bound := s.timings.LeaseDuration + s.interval
	b.ReportMetric(float64(len(owned)), "failover-loops")
	b.ReportMetric(percentile(sorted, 0.5), "failover-ms-p50")
	b.ReportMetric(percentile(sorted, 0.99), "failover-ms-p99")
	b.ReportMetric(percentile(sorted, 1), "failover-ms-max")
	b.ReportMetric(float64(written.Milliseconds()), "failover-written-ms")
	b.Logf("%s: SIGKILL of %s (%d loops) → each ticked again by another replica after p50 %.0f ms, p99 %.0f ms, max %.0f ms (lease duration + interval: %s); every one's status written by then within %s",
		time.Now().Format(time.TimeOnly), victim, len(owned), percentile(sorted, 0.5), percentile(sorted, 0.99), percentile(sorted, 1), bound, written.Round(time.Second))
	s.logClaims(b, "failover", before)
}

// rebalance starts a replica and measures the share it takes: the loops
// rendezvous hashing assigns it among the members then, the time from its
// member Lease's acquisition to each one's first tick by it, and the
// longest any loop went without a tick meanwhile.
func (s *shardRun) rebalance(b *testing.B, joiner string) {
	b.Helper()
	before := slices.Sorted(maps.Keys(s.replicas))
	claimed := s.claimsOf(b)
	started := time.Now()
	s.start(b, joiner)
	ready := time.Now()
	members := append(slices.Clone(before), joiner)
	var mine []string
	for uid, o := range s.owners(b) {
		if shard.Assign(uid, members) == joiner {
			mine = append(mine, o.name)
		}
	}
	var taken, stopped []time.Duration
	firsts, from := map[string]time.Time{}, map[string]string{}
	deadline := time.Now().Add(s.patience)
	for {
		s.check(b)
		taken, stopped = taken[:0], stopped[:0]
		for _, loop := range mine {
			if t, before, ok := s.rec.firstBy(loop, "bandwidth-"+joiner); ok {
				taken = append(taken, t.at.Sub(started))
				stopped = append(stopped, t.at.Sub(before.at))
				firsts[loop], from[loop] = t.at, strings.TrimPrefix(before.by, "bandwidth-")
			}
		}
		if len(taken) == len(mine) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of the %d loops assigned to %s not ticked by it after %s", len(mine)-len(taken), len(mine), joiner, s.patience)
		}
		time.Sleep(s.rec.every)
	}
	var lease coordinationv1.Lease
	if err := s.d.Admin.Get(context.Background(), client.ObjectKey{Namespace: deployed.SystemNamespace, Name: shard.LeasePrefix + joiner}, &lease); err != nil {
		b.Fatal(err)
	}
	joined := lease.Spec.AcquireTime.Time
	last := started
	for i := range taken {
		taken[i] -= joined.Sub(started)
		if t := joined.Add(taken[i]); t.After(last) {
			last = t
		}
	}
	// The longest gap between two ticks of any loop, from before the join
	// to a few intervals after the last handover.
	time.Sleep(statusFlush(b, s.replicas[joiner].Args) + 2*s.rec.every)
	gap := s.rec.longestGap(joined.Add(-2*s.interval), last.Add(3*s.interval))
	// A moved loop's wait, from its last tick by its old owner, which its
	// history may not show (quiet ticks are written every flush interval),
	// to its first by the joiner: the old owner's log says when the
	// rebalance that stopped it began and how long the runners it stopped
	// had gone without a tick then.
	lastTicks := map[string]time.Time{}
	for _, m := range before {
		if at, ok := s.stoppedFor(b, m, joiner, started); ok {
			lastTicks[m] = at
		}
	}
	var waits []time.Duration
	for loop, first := range firsts {
		if at, ok := lastTicks[from[loop]]; ok {
			waits = append(waits, first.Sub(at))
		}
	}
	slices.Sort(waits)
	if len(waits) > 0 {
		b.ReportMetric(percentile(waits, 1), "rebalance-wait-ms-max")
		b.Logf("%s: the %d loops the old owners' logs account for went at most p50 %.0f ms, max %.0f ms between their last tick by the old owner and their first by %s (one interval + the handoff: the handoff is the part above %s)",
			joiner, len(waits), percentile(waits, 0.5), percentile(waits, 1), joiner, s.interval)
	}
	if created, ok := s.leaseCreated(b, joiner); ok {
		var seen []time.Duration
		for _, first := range firsts {
			seen = append(seen, first.Sub(created))
		}
		slices.Sort(seen)
		b.ReportMetric(percentile(seen, 1), "rebalance-after-create-ms-max")
		b.Logf("%s: its member Lease was created %s after it asked (its log): from then the loops were first ticked by it p50 %.0f ms, max %.0f ms",
			joiner, created.Sub(joined).Round(time.Millisecond), percentile(seen, 0.5), percentile(seen, 1))
	}
	sorted, handoffs := sortedCopy(taken), sortedCopy(stopped)
	b.ReportMetric(float64(len(mine))/float64(len(s.rec.loops())), "rebalance-share")
	b.ReportMetric(percentile(sorted, 0.5), "rebalance-ms-p50")
	b.ReportMetric(percentile(sorted, 1), "rebalance-ms-max")
	b.ReportMetric(percentile(handoffs, 0.5), "rebalance-handoff-gap-ms-p50")
	b.ReportMetric(percentile(handoffs, 1), "rebalance-handoff-gap-ms-max")
	b.ReportMetric(float64(gap.Milliseconds()), "rebalance-longest-gap-ms")
	b.Logf("%s: %s joined %v (its member Lease %s, ready %s after its start): it takes %d of %d loops (%.1f%%), each first ticked by it p50 %.0f ms, max %.0f ms after its Lease (two renewals: %s); a moved loop's gap between its last tick by the old owner and its first by %s p50 %.0f ms, max %.0f ms; longest gap between two ticks of any loop %s (interval %s)",
		time.Now().Format(time.TimeOnly), joiner, before, joined.Sub(started).Round(time.Millisecond), ready.Sub(started).Round(time.Millisecond),
		len(mine), len(s.rec.loops()), 100*float64(len(mine))/float64(len(s.rec.loops())), percentile(sorted, 0.5), percentile(sorted, 1),
		2*s.timings.RetryPeriod, joiner, percentile(handoffs, 0.5), percentile(handoffs, 1), gap.Round(time.Millisecond), s.interval)
	s.logClaims(b, "rebalance", claimed)
	s.logSlowest(b, firsts, joined)
}

// stoppedFor reads member's log for the rebalance after since that gave
// loops to joiner: the earliest its stopped runners' last ticks can have
// been (when it began, less how long they had gone without a tick then).
func (s *shardRun) stoppedFor(b *testing.B, member, joiner string, since time.Time) (time.Time, bool) {
	b.Helper()
	for _, l := range s.logged(b, member) {
		if l.Msg != "rebalanced" || l.Stopped == 0 || !slices.Contains(l.Members, joiner) {
			continue
		}
		if begun := l.at.Add(-seconds(l.In)); begun.After(since) {
			return begun.Add(-seconds(l.Idle)), true
		}
	}
	return time.Time{}, false
}

// leaseCreated is when member's log says it took its member Lease: the
// others can see it from then (its acquireTime is when it asked).
func (s *shardRun) leaseCreated(b *testing.B, member string) (time.Time, bool) {
	b.Helper()
	for _, l := range s.logged(b, member) {
		if l.Msg == "member Lease taken" {
			return l.at, true
		}
	}
	return time.Time{}, false
}

// logLine is a line of a replica's log, the fields the benchmark reads.
type logLine struct {
	Msg     string   `json:"msg"`
	TS      string   `json:"ts"`
	Members []string `json:"members"`
	Stopped int      `json:"stopped"`
	In      float64  `json:"in"`
	Idle    float64  `json:"idle"`
	at      time.Time
}

// logged are the lines of a replica's log so far.
func (s *shardRun) logged(b *testing.B, member string) []logLine {
	b.Helper()
	g, ok := s.replicas[member]
	if !ok {
		return nil
	}
	f, err := os.Open(g.Log)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var l logLine
		if json.Unmarshal(lines.Bytes(), &l) != nil || l.Msg == "" {
			continue // not a JSON line: Go's own messages
		}
		if l.at, err = time.Parse("2006-01-02T15:04:05.000Z0700", l.TS); err != nil {
			b.Fatalf("%s's log: %v (config/manager's --zap-time-encoding=iso8601 gives milliseconds)", member, err)
		}
		out = append(out, l)
	}
	return out
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// logSlowest logs the ticks around the join of the three loops the joiner
// took last, to tell where their time went: the old owner ticking on, a
// gap, or the joiner's first ticks unrecorded.
func (s *shardRun) logSlowest(b *testing.B, firsts map[string]time.Time, joined time.Time) {
	loops := slices.SortedFunc(maps.Keys(firsts), func(x, y string) int { return firsts[y].Compare(firsts[x]) })
	for _, loop := range loops[:min(3, len(loops))] {
		var around []string
		for _, t := range s.rec.between(joined.Add(-2*s.interval), firsts[loop].Add(time.Millisecond)) {
			if t.loop == loop {
				around = append(around, fmt.Sprintf("%+.3fs %s", t.at.Sub(joined).Seconds(), strings.TrimPrefix(t.by, "bandwidth-")))
			}
		}
		b.Logf("slow join: %s first ticked by the joiner %.3f s after its Lease; its ticks from two intervals before the Lease: %s",
			loop, firsts[loop].Sub(joined).Seconds(), strings.Join(around, ", "))
	}
}

// leaseTimings are the manifest's lease timings, which the member Leases
// share with leader election.
func leaseTimings(b *testing.B, args []string) shard.Timings {
	b.Helper()
	get := func(name string) time.Duration {
		v, ok := deployed.ArgValue(args, name)
		if !ok {
			b.Fatalf("config/default's manager has no %s", name)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s=%s: %v", name, v, err)
		}
		return d
	}
	return shard.Timings{
		LeaseDuration: get("--leader-elect-lease-duration"),
		RenewDeadline: get("--leader-elect-renew-deadline"),
		RetryPeriod:   get("--leader-elect-retry-period"),
	}
}

// tick is one recorded tick: its loop, start, and the revision it ran
// (the replica: bandwidth-rK).
type tick struct {
	loop string
	at   time.Time
	by   string
}

// tickRecorder keeps every tick of the loops of a namespace it saw in
// their status.history, listing them every so often.
type tickRecorder struct {
	interval time.Duration // the loops'
	every    time.Duration // how often it lists them

	mu     sync.Mutex
	ticks  map[string]map[time.Time]string  // loop → start → by
	starts map[string]map[int64]time.Time   // loop → tick number → start
	twice  map[string]map[int64][]time.Time // loop → a tick number seen with two starts → both
	failed int                              // lists that failed: their ticks may be missing
}

func recordTicks(b *testing.B, d *deployment, ns string, interval, every time.Duration) *tickRecorder {
	rec := &tickRecorder{interval: interval, every: every, ticks: map[string]map[time.Time]string{},
		starts: map[string]map[int64]time.Time{}, twice: map[string]map[int64][]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.Cleanup(func() { cancel(); <-done })
	read := func() {
		// In pages (served from the API server's watch cache: the
		// recorder's own load is their encoding, not etcd reads).
		list, err := listLoops(d.Admin, ns)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if err != nil {
			rec.failed++
			return
		}
		for _, l := range list.Items {
			m := rec.ticks[l.Name]
			if m == nil {
				m = map[time.Time]string{}
				rec.ticks[l.Name] = m
			}
			starts := rec.starts[l.Name]
			if starts == nil {
				starts = map[int64]time.Time{}
				rec.starts[l.Name] = starts
			}
			for _, h := range l.Status.History {
				_, by, _ := strings.Cut(h.Revision, "@")
				m[h.Time.Time] = by
				if at, ok := starts[h.Tick]; !ok {
					starts[h.Tick] = h.Time.Time
				} else if !at.Equal(h.Time.Time) && rec.twice[l.Name][h.Tick] == nil {
					if rec.twice[l.Name] == nil {
						rec.twice[l.Name] = map[int64][]time.Time{}
					}
					rec.twice[l.Name][h.Tick] = []time.Time{at, h.Time.Time}
				}
			}
		}
	}
	read()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
				read()
			}
		}
	}()
	return rec
}

func (rec *tickRecorder) listsFailed() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.failed
}

func (rec *tickRecorder) loops() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Collect(maps.Keys(rec.ticks))
}

// sorted are a loop's ticks, oldest first.
func (rec *tickRecorder) sorted(loop string) []tick {
	var out []tick
	for at, by := range rec.ticks[loop] {
		out = append(out, tick{loop: loop, at: at, by: by})
	}
	slices.SortFunc(out, func(a, b tick) int { return a.at.Compare(b.at) })
	return out
}

// between are the ticks that started in [from, to).
func (rec *tickRecorder) between(from, to time.Time) []tick {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []tick
	for loop := range rec.ticks {
		for _, t := range rec.sorted(loop) {
			if !t.at.Before(from) && t.at.Before(to) {
				out = append(out, t)
			}
		}
	}
	return out
}

// lags are, for each tick started in [from, to), how late it started
// against its predecessor's start plus the interval; sorted.
func (rec *tickRecorder) lags(from, to time.Time) []time.Duration {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []time.Duration
	for loop := range rec.ticks {
		ticks := rec.sorted(loop)
		for i := 1; i < len(ticks); i++ {
			if !ticks[i].at.Before(from) && ticks[i].at.Before(to) {
				out = append(out, ticks[i].at.Sub(ticks[i-1].at.Add(rec.interval)))
			}
		}
	}
	slices.Sort(out)
	return out
}

// firstAfter is a loop's first tick that started after since.
func (rec *tickRecorder) firstAfter(loop string, since time.Time) (tick, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, t := range rec.sorted(loop) {
		if t.at.After(since) {
			return t, true
		}
	}
	return tick{}, false
}

// firstBy is a loop's first tick run by revision by, and the tick before
// it (by another replica; zero if none).
func (rec *tickRecorder) firstBy(loop, by string) (first, before tick, ok bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ticks := rec.sorted(loop)
	for i, t := range ticks {
		if t.by == by {
			if i > 0 {
				before = ticks[i-1]
			} else {
				before.at = t.at
			}
			return t, before, true
		}
	}
	return tick{}, tick{}, false
}

// longestGap is the longest time between two consecutive ticks of any
// loop, the later of them started in [from, to).
func (rec *tickRecorder) longestGap(from, to time.Time) time.Duration {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var longest time.Duration
	for loop := range rec.ticks {
		ticks := rec.sorted(loop)
		for i := 1; i < len(ticks); i++ {
			if !ticks[i].at.Before(from) && ticks[i].at.Before(to) {
				longest = max(longest, ticks[i].at.Sub(ticks[i-1].at))
			}
		}
	}
	return longest
}

// checkOnce fails the benchmark when a loop ran twice: a tick number its
// history held with two start times, or two ticks closer than the CRD's
// default minInterval (its loops' own).
func (rec *tickRecorder) checkOnce(b *testing.B) {
	b.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	twice, near, n := 0, 0, 0
	for loop := range rec.ticks {
		for tick, at := range rec.twice[loop] {
			twice++
			if twice <= 5 {
				b.Errorf("loop %s: tick %d started twice, at %s and %s", loop, tick,
					at[0].Format(time.StampMicro), at[1].Format(time.StampMicro))
			}
		}
		ticks := rec.sorted(loop)
		n += len(ticks)
		for i := 1; i < len(ticks); i++ {
			if gap := ticks[i].at.Sub(ticks[i-1].at); gap < 50*time.Millisecond {
				near++
				if near <= 5 {
					b.Errorf("loop %s: ticks by %s and %s %s apart", loop, ticks[i-1].by, ticks[i].by, gap)
				}
			}
		}
	}
	b.ReportMetric(float64(twice+near), "ticks-run-twice")
	b.Logf("%d ticks of %d loops recorded: %d tick numbers started twice, %d ticks closer than minInterval",
		n, len(rec.ticks), twice, near)
}

// claims are the loops a replica took so far (handed on to it or claimed),
// and its claims refused or failed, by result, and the sum of their times (governor_shard_claims_total, governor_shard_takeover_seconds).
type claims struct {
	byResult map[string]float64
	seconds  float64
}

// claimsOf reads the claims of every running replica so far.
func (s *shardRun) claimsOf(b *testing.B) map[string]claims {
	b.Helper()
	out := map[string]claims{}
	for m, g := range s.replicas {
		code, body, err := g.Get("/metrics", s.d.metricsToken)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		if err != nil {
			b.Fatalf("%s's /metrics: %v", m, err)
		}
		got, err := parseMetrics(strings.NewReader(body))
		if err != nil {
			b.Fatalf("%s's /metrics: %v", m, err)
		}
		out[m] = claims{
			byResult: got("governor_shard_claims_total", "result", nil, "value"),
			seconds:  got("governor_shard_takeover_seconds", "", nil, "sum")[""],
		}
	}
	return out
}

// logClaims logs the loops each replica took, and its claims, since before (a replica
// absent then counts from zero): how a handoff's time went.
func (s *shardRun) logClaims(b *testing.B, what string, before map[string]claims) {
	b.Helper()
	after := s.claimsOf(b)
	line := what + ": claims since"
	for _, m := range slices.Sorted(maps.Keys(after)) {
		a, o := after[m], before[m]
		n := 0.0
		counts := ""
		for _, r := range []string{"handed", "deferred", "claimed", "refused", "failed"} {
			d := a.byResult[r] - o.byResult[r]
			n += d
			counts += fmt.Sprintf(" %s %.0f", r, d)
		}
		mean := 0.0
		if n > 0 {
			mean = 1000 * (a.seconds - o.seconds) / n
		}
		line += fmt.Sprintf("; %s:%s, mean %.0f ms to the answer", m, counts, mean)
	}
	b.Log(line)
}
