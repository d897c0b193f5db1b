//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/leaderelection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
)

// The controller as config/default deploys it.
const (
	systemNamespace = "governor-system"
	serviceAccount  = "governor-controller-manager"
	managerName     = "governor-controller-manager"
)

// failoverInterval is the test loop's interval (the CRD's minimum).
const failoverInterval = 100 * time.Millisecond

// leaseTimings are governor run's --leader-elect-* flags.
type leaseTimings struct{ lease, renew, retry time.Duration }

func (l leaseTimings) flags() map[string]string {
	return map[string]string{
		"--leader-elect-lease-duration": l.lease.String(),
		"--leader-elect-renew-deadline": l.renew.String(),
		"--leader-elect-retry-period":   l.retry.String(),
	}
}

// maxRetryWait is the longest a replica waits between two tries at the
// Lease: client-go jitters the retry period by up to JitterFactor times.
func (l leaseTimings) maxRetryWait() time.Duration {
	return time.Duration((1 + leaderelection.JitterFactor) * float64(l.retry))
}

// TestFailover runs two governor binaries as config/default deploys them
// (the shipped ServiceAccount's token, the Deployment's arguments) with
// short lease timings and --shards=1 (the leader runs every loop), and one
// loop ticking every 100ms. SIGKILL of the
// leader: the standby takes the Lease once it has expired, not before, and
// ticks. SIGTERM of the leader: it writes its last ticks, hands the Lease
// back, and the standby goes on from the very next tick. How long each takes
// is BenchmarkFailover's figure (below), not asserted here: a loaded
// machine stretches it.
func TestFailover(t *testing.T) {
	timings := leaseTimings{lease: 5 * time.Second, renew: 3 * time.Second, retry: 250 * time.Millisecond}
	flags := timings.flags()
	flags["--shards"] = "1" // the leader runs the loop (TestShards: shared by the replicas)
	r := newFailoverRig(t, flags)
	ctx := context.Background()

	a := r.start(t, "a")
	r.waitFor(t, 30*time.Second, "a ticking as leader", func() bool { return len(r.ticksOf("a")) >= 3 })
	b := r.start(t, "b")
	b.waitReady(t)
	// Long enough for the standby to have tried the Lease a few times.
	time.Sleep(3 * timings.maxRetryWait())
	assert.Empty(t, r.ticksOf("b"), "the standby ticks while the leader holds the Lease")

	killed := time.Now()
	a.kill(t)
	r.waitFor(t, 30*time.Second, "b ticking after a's SIGKILL", func() bool { return len(r.ticksOf("b")) > 0 })
	ticksA, firstB := r.ticksOf("a"), r.ticksOf("b")[0]
	assert.True(t, ticksA[len(ticksA)-1].Time.Time.Before(killed), "a ticked after its SIGKILL")
	takeover := r.holderAfter(t, killed)
	assert.False(t, firstB.Time.Time.Before(takeover.acquired), "b ticked before it held the Lease")
	// The Lease is honoured: a's last renewal was at most a renew deadline
	// and a retry before the kill, and b waits a lease duration from when it
	// saw it.
	assert.GreaterOrEqual(t, takeover.acquired.Sub(killed), timings.lease-timings.renew-timings.retry,
		"b took the Lease before it expired")
	failover := firstB.Time.Sub(killed)
	t.Logf("SIGKILL of the leader → the standby's first tick: %s", failover.Round(time.Millisecond))

	c := r.start(t, "c")
	c.waitReady(t)
	time.Sleep(3 * timings.maxRetryWait())
	stopped := time.Now()
	b.terminate(t)
	r.waitFor(t, 30*time.Second, "c ticking after b's SIGTERM", func() bool { return len(r.ticksOf("c")) > 0 })
	ticksB, firstC := r.ticksOf("b"), r.ticksOf("c")[0]
	lastB := ticksB[len(ticksB)-1]
	assert.True(t, lastB.Time.Time.Before(firstC.Time.Time), "c ticked while b still did")
	// b wrote its last ticks on its way out: c goes on from the next one.
	assert.Equal(t, lastB.Tick+1, firstC.Tick, "ticks lost in a graceful handover")
	handover := firstC.Time.Sub(stopped)
	t.Logf("SIGTERM of the leader → the standby's first tick: %s", handover.Round(time.Millisecond))

	// Every leader the Lease had, in order, with b's release between b and c.
	holders := r.holderSequence()
	require.Len(t, holders, 4, "%q", holders)
	assert.NotEmpty(t, holders[0])
	assert.NotContains(t, []string{"", holders[0]}, holders[1])
	assert.Empty(t, holders[2], "b hands the Lease back on SIGTERM")
	assert.NotContains(t, []string{"", holders[0], holders[1]}, holders[3])

	// Leader election's Events are recorded with the shipped Role and the
	// events right README tells a user of --shards 1 to add, and no replica
	// met a refusal of it.
	r.waitFor(t, 10*time.Second, "c's LeaderElection Event", func() bool {
		var events corev1.EventList
		require.NoError(t, r.c.List(ctx, &events, client.InNamespace(systemNamespace)))
		return slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.Reason == "LeaderElection" && e.Message == holders[3]+" became leader"
		})
	})
	for _, p := range []*replica{a, b, c} {
		assert.NotContains(t, p.output(t), "forbidden", "replica %s", p.name)
	}
}

// BenchmarkFailover measures failover between two governor binaries as
// config/default deploys them, with the shipped lease timings and
// --shards=1 (test/perf's BenchmarkShards: sharded loops): each op
// SIGKILLs the leader (kill → the standby's first tick), starts it again
// as the standby, then SIGTERMs the new leader (SIGTERM → the standby's
// first tick) and starts it again.
//
//	go test -tags integration -run '^$' -bench Failover -benchtime 1x -count 5 ./test/integration/
func BenchmarkFailover(b *testing.B) {
	r := newFailoverRig(b, map[string]string{"--shards": "1"}) // the leader runs the loop
	n := 0
	start := func() *replica {
		n++
		return r.start(b, fmt.Sprintf("r%d", n))
	}
	leader := start()
	r.waitFor(b, 30*time.Second, "the first leader ticking", func() bool { return len(r.ticksOf(leader.name)) > 0 })
	standby := start()
	standby.waitReady(b)
	var kill, term time.Duration
	b.ResetTimer()
	for range b.N {
		kill += r.handover(b, leader, standby, (*replica).kill)
		leader, standby = standby, start()
		standby.waitReady(b)
		term += r.handover(b, leader, standby, (*replica).terminate)
		leader, standby = standby, start()
		standby.waitReady(b)
	}
	b.StopTimer()
	b.ReportMetric(kill.Seconds()/float64(b.N), "s-kill-to-tick")
	b.ReportMetric(term.Seconds()/float64(b.N), "s-term-to-tick")
}

// handover stops the leader the given way once the standby has had time to
// see the Lease, and returns how long until the standby's first tick.
func (r *failoverRig) handover(tb testing.TB, leader, standby *replica, stop func(*replica, testing.TB)) time.Duration {
	tb.Helper()
	time.Sleep(2 * time.Second)
	stopped := time.Now()
	stop(leader, tb)
	r.waitFor(tb, time.Minute, standby.name+" ticking", func() bool { return len(r.ticksOf(standby.name)) > 0 })
	return r.ticksOf(standby.name)[0].Time.Sub(stopped)
}

// failoverRig is a real API server with config/default applied, a loop
// ticking on it, and what the test saw of the loop's ticks and of the
// leader Lease.
type failoverRig struct {
	c          client.WithWatch
	bin        string
	kubeconfig string
	args       []string // the manager Deployment's, with the test's flags
	dir        string

	mu      sync.Mutex
	ticks   map[time.Time]v1alpha1.HistoryEntry // by start
	records []coordinationv1.LeaseSpec          // in the order written
}

// newFailoverRig applies config/default, makes a kubeconfig with a token of
// the shipped ServiceAccount, builds governor, creates a loop that ticks
// every 100ms on the shipped reactive policy, and starts recording its
// ticks and the Lease. flags replace the Deployment's (or are added).
func newFailoverRig(tb testing.TB, flags map[string]string) *failoverRig {
	tb.Helper()
	api := cluster.StartAPIServer(tb)
	out, err := api.Kubectl("apply", "--server-side", "-k", filepath.Join(repo, "config/default"))
	require.NoError(tb, err, out)
	out, err = api.Kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/controlloops.governor.dev")
	require.NoError(tb, err, out)
	c, err := client.NewWithWatch(api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(tb, err)
	r := &failoverRig{c: c, dir: tb.TempDir(), ticks: map[time.Time]v1alpha1.HistoryEntry{}}
	if flags["--shards"] == "1" {
		grantLeaderElectionEvents(tb, c)
	}

	token, err := api.Kubectl("create", "token", serviceAccount, "-n", systemNamespace, "--duration=1h")
	require.NoError(tb, err, token)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: api.Config.Host, CertificateAuthorityData: api.Config.CAData}
	kc.AuthInfos["governor"] = &clientcmdapi.AuthInfo{Token: strings.TrimSpace(token)}
	kc.Contexts["governor"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "governor"}
	kc.CurrentContext = "governor"
	r.kubeconfig = filepath.Join(r.dir, "governor.kubeconfig")
	require.NoError(tb, clientcmd.WriteToFile(*kc, r.kubeconfig))

	var d appsv1.Deployment
	require.NoError(tb, c.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: managerName}, &d))
	r.args = withFlags(d.Spec.Template.Spec.Containers[0].Args, flags)

	r.bin = governorBinary(tb)

	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	tb.Cleanup(func() { cancel(); done.Wait() })
	r.loop(tb)
	done.Go(func() { r.recordTicks(ctx) })
	leases, err := c.Watch(ctx, &coordinationv1.LeaseList{}, client.InNamespace(systemNamespace))
	require.NoError(tb, err)
	done.Go(func() { r.recordLease(leases) })
	return r
}

// grantLeaderElectionEvents adds to the shipped Lease Role what README's
// "Failover" tells a user of --shards 1 to add: create core Events, which
// leader election records its transitions as (the manifest, sharded, has
// no leader and does not grant it).
func grantLeaderElectionEvents(tb testing.TB, c client.Client) {
	tb.Helper()
	var role rbacv1.Role
	require.NoError(tb, c.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: "governor-leader-election-role"}, &role))
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}})
	require.NoError(tb, c.Update(context.Background(), &role))
}

// withFlags replaces the --name=value arguments of args that flags name,
// and adds the others.
func withFlags(args []string, flags map[string]string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if v, ok := flags[name]; ok {
			a, seen[name] = name+"="+v, true
		}
		out = append(out, a)
	}
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		if !seen[name] {
			out = append(out, name+"="+flags[name])
		}
	}
	return out
}

// loop creates the loop whose ticks tell which replica leads: a Deployment
// kept between 1 and 10 replicas by the shipped reactive policy.
func (r *failoverRig) loop(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	require.NoError(tb, r.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plant"}}))
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	require.NoError(tb, r.c.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "plant", Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}},
	}))
	web := deploymentTarget("web", "web")
	web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
	spec := echoSpec(`{}`, web)
	spec.Policy.Bundle, spec.Policy.Decision = "reactive", "governor/reactive/decision"
	spec.Interval = metav1.Duration{Duration: failoverInterval}
	spec.HistoryLimit = 200
	require.NoError(tb, r.c.Create(ctx, &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "plant", Name: "scaling"}, Spec: spec}))
}

// recordTicks reads the loop every 20ms and keeps every history entry
// (200 of them span 20 s of ticks) until ctx ends. A read is never cut
// short: client-go would log it.
func (r *failoverRig) recordTicks(ctx context.Context) {
	for ctx.Err() == nil {
		var l v1alpha1.ControlLoop
		if err := r.c.Get(context.Background(), types.NamespacedName{Namespace: "plant", Name: "scaling"}, &l); err == nil {
			r.mu.Lock()
			for _, h := range l.Status.History {
				r.ticks[h.Time.Time] = h
			}
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// recordLease keeps every version of the leader Lease until the watch ends.
func (r *failoverRig) recordLease(w watch.Interface) {
	for ev := range w.ResultChan() {
		l, ok := ev.Object.(*coordinationv1.Lease)
		if !ok || l.Name != controller.LeaderElectionID || ev.Type == watch.Deleted {
			continue
		}
		r.mu.Lock()
		r.records = append(r.records, l.Spec)
		r.mu.Unlock()
	}
}

// ticksOf are the ticks replica name ran (its bundle's revision says so),
// oldest first.
func (r *failoverRig) ticksOf(name string) []v1alpha1.HistoryEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []v1alpha1.HistoryEntry
	for _, h := range r.ticks {
		if strings.HasSuffix(h.Revision, "@reactive-"+name) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.HistoryEntry) int { return a.Time.Compare(b.Time.Time) })
	return out
}

// holderSequence is the Lease's holders in order, repeats left out ("" is
// a released Lease).
func (r *failoverRig) holderSequence() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.records {
		h := ""
		if s.HolderIdentity != nil {
			h = *s.HolderIdentity
		}
		if len(out) == 0 || out[len(out)-1] != h {
			out = append(out, h)
		}
	}
	return out
}

// takeover is a Lease taken by a new holder.
type takeover struct {
	holder   string
	acquired time.Time // by the new holder's clock
}

// holderAfter is the first Lease acquired after t.
func (r *failoverRig) holderAfter(tb testing.TB, t time.Time) takeover {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.records {
		if s.HolderIdentity != nil && *s.HolderIdentity != "" && s.AcquireTime != nil && s.AcquireTime.After(t) {
			return takeover{holder: *s.HolderIdentity, acquired: s.AcquireTime.Time}
		}
	}
	tb.Fatalf("no Lease acquired after %s", t.Format(time.StampMicro))
	return takeover{}
}

// waitFor polls cond every 20ms until it holds, or fails the test.
func (r *failoverRig) waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", timeout, what)
		}
	}
}

// replica is one governor run process.
type replica struct {
	name  string
	cmd   *exec.Cmd
	log   string
	probe string
	done  chan struct{} // closed once the process is gone
	err   error         // how it ended, once done
}

// start runs governor with the Deployment's arguments, its own bundle
// directory (the shipped reactive policy at revision reactive-<name>, so
// that the loop's history tells which replica ticked), the shipped
// ServiceAccount's kubeconfig and addresses of its own. The process is
// killed when the test ends; its output is shown when the test failed.
func (r *failoverRig) start(tb testing.TB, name string) *replica {
	tb.Helper()
	bundles := filepath.Join(r.dir, "bundles-"+name)
	require.NoError(tb, os.CopyFS(filepath.Join(bundles, "reactive"), os.DirFS(filepath.Join(repo, "policies", "reactive"))))
	deployed.StampRevision(tb, filepath.Join(bundles, "reactive"), "reactive-"+name)

	p := &replica{name: name, log: filepath.Join(r.dir, name+".log"), probe: deployed.FreeAddr(tb), done: make(chan struct{})}
	own := map[string]string{
		"--bundles":                   bundles,
		"--kubeconfig":                r.kubeconfig,
		"--leader-election-namespace": systemNamespace, // in a Pod: its own
		"--health-probe-bind-address": p.probe,
		"--metrics-bind-address":      deployed.FreeAddr(tb),
		"--push-bind-address":         "0",
	}
	if slices.Contains(r.args, "--shards=auto") {
		own["--shard-member"] = name // one host: the host name would not tell replicas apart
	}
	args := withFlags(r.args, own)
	out, err := os.Create(p.log)
	require.NoError(tb, err)
	p.cmd = exec.Command(r.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	require.NoError(tb, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill() // gone already, unless the test failed
		<-p.done
		if tb.Failed() {
			tb.Logf("replica %s (governor %s):\n%s", name, strings.Join(args, " "), p.output(tb))
		}
	})
	return p
}

// waitReady waits until the replica's /readyz answers 200: it follows its
// bundles, its caches are synced, and it tries the Lease.
func (p *replica) waitReady(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.probe + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica %s not ready within 30s: %v", p.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the replica and waits until it is gone.
func (p *replica) kill(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Kill())
	<-p.done
	var exit *exec.ExitError
	require.True(tb, errors.As(p.err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL,
		"replica %s ended before its SIGKILL: %v", p.name, p.err)
}

// terminate SIGTERMs the replica, which must stop cleanly (exit 0) within
// its Deployment's grace period (10 s) and some.
func (p *replica) terminate(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		require.NoError(tb, p.err, "replica %s", p.name)
	case <-time.After(20 * time.Second):
		tb.Fatalf("replica %s did not stop within 20s of SIGTERM", p.name)
	}
}

// output is what the replica printed so far.
func (p *replica) output(tb testing.TB) string {
	tb.Helper()
	raw, err := os.ReadFile(p.log)
	require.NoError(tb, err)
	return string(raw)
}
