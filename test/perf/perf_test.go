//go:build integration && linux

package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/shard"
	"governor.dev/governor/test/deployed"
)

// The controller-runtime log of this process (envtest's): errors only.
func init() {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel), zap.WriteTo(os.Stderr)))
}

// egressAnnotation is where the bandwidth actuator writes a Pod's egress.
const egressAnnotation = "kubernetes.io/egress-bandwidth"

// Jitter values for the shipped bandwidth policy (target 2 ms, low below
// 1 ms): high lowers the egress, low raises it, hold keeps it.
const (
	jitterHigh = 10
	jitterLow  = 0.1
	jitterHold = 1.5
)

// bandwidthLoop is a loop on the shipped bandwidth bundle over the
// Deployments named by targets, its jitter pushed by the managed system
// (collector "jitter", token Secret "reporter"). minInterval 0 is the
// CRD's default.
func bandwidthLoop(ns, name string, interval, minInterval time.Duration, targets []string,
	params map[string]any, historyLimit int32) *v1alpha1.ControlLoop {
	p := map[string]any{"targets": targets}
	for k, v := range params {
		p[k] = v
	}
	raw, err := json.Marshal(p)
	if err != nil {
		panic(err) // a map of JSON values
	}
	l := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running,
			Interval:   metav1.Duration{Duration: interval},
			Policy:     v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision", Params: &apiextensionsv1.JSON{Raw: raw}},
			Collectors: []v1alpha1.CollectorSpec{{Name: "jitter", Push: &v1alpha1.PushCollector{TokenSecret: "reporter"}}},
			// Observations pushed once stay fresh; a change holds a target
			// for 1ms only (0 would be the CRD's default, 30s).
			Safety:       v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: time.Hour}, Cooldown: metav1.Duration{Duration: time.Millisecond}},
			HistoryLimit: historyLimit,
		},
	}
	if minInterval > 0 {
		l.Spec.MinInterval = &metav1.Duration{Duration: minInterval}
	}
	for _, t := range targets {
		l.Spec.Targets = append(l.Spec.Targets, v1alpha1.TargetSpec{
			Name: t, Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: t},
			Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("1M"), Max: resource.MustParse("1000M")},
		})
	}
	return l
}

var namespaces atomic.Int64

// newNamespace makes a namespace of its own for one benchmark run and
// deletes it (its loops stop ticking) when the run ends.
func (d *deployment) newNamespace(b *testing.B, prefix string) string {
	b.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, namespaces.Add(1))
	d.namespace(b, ns)
	b.Cleanup(func() {
		_ = d.Admin.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	return ns
}

// BenchmarkReaction measures, from outside, the time from a push of a new
// jitter value to governor's push endpoint to the new egress annotation
// being seen (by a watch) on every Pod of the target (3 replicas), over
// b.N pushes (make bench-deployed: -benchtime 100x) with a random pause
// before each, so that they land anywhere between two interval ticks:
//
//   - woken-interval-1s: interval 1s, the push wakes the loop (minInterval
//     at its default, 50ms);
//   - interval-200ms-no-wake: interval 200ms and minInterval 200ms, so that
//     a push cannot bring a tick forward: it waits for the next interval
//     tick, as with a collector that does not wake its loop.
//
// The policy (ewma_alpha 1, egress between 16M and 20M) sets 16M on a high
// jitter and 20M on a low one, and nothing on a repeat: pushes alternate.
func BenchmarkReaction(b *testing.B) {
	d := deploy(b)
	g := d.start(b)
	for _, c := range []struct {
		name                  string
		interval, minInterval time.Duration
	}{
		{"woken-interval-1s", time.Second, 0},
		{"interval-200ms-no-wake", 200 * time.Millisecond, 200 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) { reaction(b, d, g, c.interval, c.minInterval) })
	}
}

func reaction(b *testing.B, d *deployment, g *governor, interval, minInterval time.Duration) {
	ctx := context.Background()
	ns := d.newNamespace(b, "reaction")
	d.workloads(b, ns, []string{"web"}, 3)
	params := map[string]any{"ewma_alpha": 1, "min": "16M", "max": "20M", "decrease_factor": 0.8,
		"increase_step": "10M", "cooldown_seconds": 0}
	if err := d.Admin.Create(ctx, bandwidthLoop(ns, "qos", interval, minInterval, []string{"web"}, params, 20)); err != nil {
		b.Fatal(err)
	}
	waitTicked(b, d, g, ns, 1)

	var pods corev1.PodList
	if err := d.Admin.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	egress := map[string]string{}
	for _, p := range pods.Items {
		egress[p.Name] = p.Annotations[egressAnnotation]
	}
	w, err := d.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: pods.ResourceVersion})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	var lat, accepted []time.Duration
	b.ResetTimer()
	for i := range b.N {
		jitter, want := float64(jitterHigh), resource.MustParse("16M")
		if i%2 == 1 {
			jitter, want = jitterLow, resource.MustParse("20M")
		}
		time.Sleep(50*time.Millisecond + rand.N(interval))
		pushed := time.Now()
		if err := g.Push(ns, "qos", pushToken, map[string]float64{"jitter": jitter}); err != nil {
			b.Fatal(err)
		}
		accepted = append(accepted, time.Since(pushed))
		lat = append(lat, waitEgress(b, g, w, egress, want, pushed))
	}
	b.StopTimer()
	s := sortedCopy(lat)
	b.ReportMetric(percentile(s, 0.5), "ms-p50")
	b.ReportMetric(percentile(s, 0.99), "ms-p99")
	b.ReportMetric(percentile(s, 1), "ms-max")
	b.ReportMetric(float64(len(s)), "pushes")
	// The push's own answer: governor answers once the observation is
	// written to the loop's status.
	b.ReportMetric(percentile(sortedCopy(accepted), 0.5), "push-answered-ms-p50")
}

// waitEgress follows the Pods' watch until every Pod's egress annotation is
// want, and returns how long after since that was.
func waitEgress(b *testing.B, g *governor, w watch.Interface, egress map[string]string, want resource.Quantity, since time.Time) time.Duration {
	b.Helper()
	done := func() bool {
		for _, v := range egress {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.Cmp(want) != 0 {
				return false
			}
		}
		return true
	}
	timeout := time.After(30 * time.Second)
	for !done() {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatal("the Pods' watch ended")
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Modified {
				if _, ours := egress[p.Name]; ours {
					egress[p.Name] = p.Annotations[egressAnnotation]
				}
			}
		case <-timeout:
			g.Check(b)
			b.Fatalf("no egress %s on every Pod 30s after the push: %v\n%s", want.String(), egress, g.Tail())
		}
	}
	return time.Since(since)
}

// waitTicked waits until every loop of ns has ticked at least ticks times.
func waitTicked(b *testing.B, d *deployment, g *governor, ns string, ticks int64) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		g.Check(b)
		list, err := listLoops(d.Admin, ns)
		if err != nil {
			b.Fatal(err)
		}
		behind := 0
		for _, l := range list.Items {
			if l.Status.Tick < ticks {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d loops below tick %d after 5 minutes", behind, len(list.Items), ticks)
		}
		time.Sleep(time.Second)
	}
}

// BenchmarkTickRate measures the ticks per second governor achieves against
// those demanded, counted from the loops' status.history over a window: one
// loop at 100ms and at 200ms, and 100 loops at 1s, each with one target and
// a jitter in the policy's hold band (quiet ticks, as between changes).
func BenchmarkTickRate(b *testing.B) {
	d := deploy(b)
	g := d.start(b)
	for _, c := range []struct {
		loops    int
		interval time.Duration
		window   time.Duration
	}{
		{1, 100 * time.Millisecond, 10 * time.Second},
		{1, 200 * time.Millisecond, 10 * time.Second},
		{100, time.Second, 20 * time.Second},
	} {
		b.Run(fmt.Sprintf("loops=%d/interval=%s", c.loops, c.interval), func(b *testing.B) {
			ns := d.newNamespace(b, "rate")
			d.workloads(b, ns, []string{"web"}, 1)
			limit := historyLimit(c.window, g.flush, c.interval)
			makeLoops(b, d, ns, 0, c.loops, func(name string) *v1alpha1.ControlLoop {
				return bandwidthLoop(ns, name, c.interval, 0, []string{"web"}, nil, limit)
			})
			waitTicked(b, d, g, ns, 1)
			pushAll(b, d, g, ns, c.loops)
			b.ResetTimer()
			var rates []float64
			for range b.N {
				time.Sleep(3 * time.Second) // the pushes' ticks are behind
				w := window(b, d, g, ns, c.window, c.interval)
				rates = append(rates, w.ticksPerSecond())
			}
			b.StopTimer()
			rate := median(rates)
			b.ReportMetric(rate, "ticks/s")
			b.ReportMetric(rate/(float64(c.loops)*float64(time.Second)/float64(c.interval)), "of-demand")
		})
	}
}

// BenchmarkScale runs N loops × 10 targets (10 Deployments of one kwok Pod,
// which all N loops name) at 1s, each with a jitter in the hold band, and
// reports over a 30s window: ticks per second against demand, the tick lag
// (a tick's start against when it was due, its predecessor's start plus the
// interval; from status.history), governor's CPU and the control plane's
// (cores, /proc/<pid>/stat), the machine's, governor's peak RSS (VmHWM),
// its Go heap and stacks and garbage collections per second (its
// /metrics), and the API requests per second governor sends (rest_client_requests_total
// of its /metrics), by method. Each N runs on a fresh cluster. The lag is
// also read from governor's governor_tick_lag_seconds (histogram-lag-ms-*,
// interpolated within its buckets, and late-over-100ms, the share of ticks
// more than 100ms late), which counts every tick of the window.
//
// PERF_LOOPS lists the Ns (default 100; e.g. PERF_LOOPS=100,1000), and
// PERF_STATUS_FLUSH values of --status-flush-interval to run each N with
// besides the manifest's own (e.g. PERF_STATUS_FLUSH=10s,30s).
// PERF_MEMORY_LIMIT (deploy) applies. The loops keep a status.history long
// enough to hold the window's ticks (for ticks/s, lag-ms-*) unless
// PERF_HISTORY_LIMIT sets its length: 20, the CRD's default, is what loops
// have unless their authors set one (their statuses are smaller, so each
// write costs the API server less), and the figures from status.history
// then cover only the window's last ticks.
func BenchmarkScale(b *testing.B) {
	flushes := []string{""} // the manifest's
	if env := os.Getenv("PERF_STATUS_FLUSH"); env != "" {
		flushes = append(flushes, strings.Split(env, ",")...)
	}
	for _, n := range loopCounts(b) {
		for _, flush := range flushes {
			name := fmt.Sprintf("loops=%d/flush=manifest", n)
			var extra []string
			if flush != "" {
				name = fmt.Sprintf("loops=%d/flush=%s", n, flush)
				extra = []string{"--status-flush-interval=" + flush}
			}
			b.Run(name, func(b *testing.B) { scale(b, n, extra) })
		}
	}
}

func scale(b *testing.B, n int, extra []string) {
	const interval = time.Second
	const span = 30 * time.Second
	d := deploy(b)
	ns := "scale"
	d.namespace(b, ns)
	targets := make([]string, 10)
	for i := range targets {
		targets[i] = fmt.Sprintf("t%02d", i)
	}
	d.workloads(b, ns, targets, 1)
	limit := historyLimit(span, statusFlush(b, append(d.Args, extra...)), interval)
	if env := os.Getenv("PERF_HISTORY_LIMIT"); env != "" {
		v, err := strconv.Atoi(env)
		if err != nil || v < 1 {
			b.Fatalf("PERF_HISTORY_LIMIT=%q: want a number of entries", env)
		}
		limit = int32(v)
	}
	profiles, pprofAddr := os.Getenv("PERF_GOVERNOR_PROFILE"), ""
	if profiles != "" {
		pprofAddr = deployed.FreeAddr(b)
		extra = append(slices.Clone(extra), "--pprof-bind-address="+pprofAddr)
	}
	g := d.start(b, extra...)
	// 100 loops at a time, each lot ticking before the next is made: a
	// governor that starts with 1,000 loops writes 1,000 first statuses at
	// once (README, "Through the deployed binary").
	for from := 0; from < n; from += 100 {
		makeLoops(b, d, ns, from, min(from+100, n), func(name string) *v1alpha1.ControlLoop {
			return bandwidthLoop(ns, name, interval, 0, targets, nil, limit)
		})
		waitTicked(b, d, g, ns, 1)
		b.Logf("%s: %d loops ticking", time.Now().Format(time.TimeOnly), min(from+100, n))
	}
	pushAll(b, d, g, ns, n)
	b.ResetTimer()
	for range b.N {
		time.Sleep(5 * time.Second) // the pushes' ticks are behind
		profiled := profileAPIServer(b, d, span)
		governorProfiled := profileGovernor(b, profiles, pprofAddr, span)
		epochs := memberEpochs(b, d)
		w := window(b, d, g, ns, span, interval)
		<-profiled
		<-governorProfiled
		b.ReportMetric(float64(memberEpochs(b, d)-epochs), "member-new-epochs")
		rss, err := peakRSS(g.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		lag := sortedCopy(w.lags)
		demand := float64(n) * float64(time.Second) / float64(interval)
		b.ReportMetric(w.ticksPerSecond(), "ticks/s")
		b.ReportMetric(w.ticksPerSecond()/demand, "of-demand")
		// The same from governor's own counter: status.history undercounts
		// when statuses catch up later than it holds ticks.
		counted := rate(w.from, w.to, func(s sample) map[string]float64 {
			return s.client("governor_loop_ticks_total", "", nil, "value")
		})[""]
		b.ReportMetric(counted, "counted-ticks/s")
		b.ReportMetric(counted/demand, "counted-of-demand")
		b.ReportMetric(percentile(lag, 0.5), "lag-ms-p50")
		b.ReportMetric(percentile(lag, 0.99), "lag-ms-p99")
		// The same from governor's histogram: every tick of the window,
		// whatever status.history holds.
		b.ReportMetric(histogramQuantile(w.from, w.to, "governor_tick_lag_seconds", 0.5), "histogram-lag-ms-p50")
		b.ReportMetric(histogramQuantile(w.from, w.to, "governor_tick_lag_seconds", 0.99), "histogram-lag-ms-p99")
		b.ReportMetric(histogramAbove(w.from, w.to, "governor_tick_lag_seconds", 0.1), "late-over-100ms")
		b.ReportMetric(w.catchUp.Seconds(), "status-catch-up-s")
		b.ReportMetric(cores(w.from, w.to, "governor"), "governor-cores")
		b.ReportMetric(float64(rss)/(1<<20), "governor-peak-MiB")
		reportRuntime(b, w)
		for _, c := range []string{"kube-apiserver", "etcd", "kwok", "kube-controller-manager"} {
			b.ReportMetric(cores(w.from, w.to, c), c+"-cores")
		}
		b.ReportMetric((w.to.busy-w.from.busy).Seconds()/w.to.at.Sub(w.from.at).Seconds(), "machine-busy-cores")
		reportRequests(b, w)
	}
}

// reportRuntime reports where governor's memory is at the end of a window
// (its Go runtime's heap and goroutine stacks) and how often it collected
// garbage over it: a heap held near its limit collects all the time.
func reportRuntime(b *testing.B, w measured) {
	gauge := func(name string) float64 { return w.to.client(name, "", nil, "gauge")[""] / (1 << 20) }
	b.ReportMetric(gauge("go_memstats_heap_inuse_bytes"), "governor-heap-MiB")
	b.ReportMetric(gauge("go_memstats_stack_inuse_bytes"), "governor-stacks-MiB")
	b.ReportMetric(rate(w.from, w.to, func(s sample) map[string]float64 {
		return s.client("go_gc_cycles_total_gc_cycles_total", "", nil, "value")
	})[""], "governor-gc/s")
}

// reportRequests reports the API requests per second governor sent, by
// method, and their mean latency as it saw it; on the API server's side,
// all requests per second, the mean time requests waited in priority and
// fairness's queues by priority level, and the mean time of a loop's status
// PATCH.
func reportRequests(b *testing.B, w measured) {
	var total float64
	sent := rate(w.from, w.to, func(s sample) map[string]float64 {
		return s.client("rest_client_requests_total", "method", nil, "value")
	})
	for method, r := range sent {
		total += r
		b.ReportMetric(r, "req/s-"+method)
	}
	b.ReportMetric(total, "req/s")
	for verb, ms := range meanMillis(w.from, w.to, func(s sample, field string) map[string]float64 {
		return s.client("rest_client_request_duration_seconds", "verb", nil, field)
	}) {
		b.ReportMetric(ms, "client-ms-"+verb)
	}
	all := rate(w.from, w.to, func(s sample) map[string]float64 {
		return s.server("apiserver_request_total", "", nil, "value")
	})
	b.ReportMetric(all[""], "apiserver-req/s")
	for level, ms := range meanMillis(w.from, w.to, func(s sample, field string) map[string]float64 {
		return s.server("apiserver_flowcontrol_request_wait_duration_seconds", "priority_level", nil, field)
	}) {
		b.ReportMetric(ms, "apf-wait-ms-"+level)
	}
	patch := meanMillis(w.from, w.to, func(s sample, field string) map[string]float64 {
		return s.server("apiserver_request_duration_seconds", "", map[string]string{
			"verb": "PATCH", "resource": "controlloops", "subresource": "status"}, field)
	})
	b.ReportMetric(patch[""], "apiserver-status-patch-ms")
}

// memberEpochs is the sum of the member Leases' epochs (leaseTransitions):
// its growth over a window is how often a replica's Lease expired, each
// time holding its loops until they were claimed again.
func memberEpochs(b *testing.B, d *deployment) int64 {
	var leases coordinationv1.LeaseList
	if err := d.Admin.List(context.Background(), &leases, client.InNamespace(deployed.SystemNamespace)); err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, l := range leases.Items {
		if strings.HasPrefix(l.Name, shard.LeasePrefix) {
			sum += int64(ptr.Deref(l.Spec.LeaseTransitions, 0))
		}
	}
	return sum
}

// profileGovernor takes governor's CPU profile over most of a window, then
// its heap profile, into dir (cpu.prof, heap.prof) when dir is set
// (PERF_GOVERNOR_PROFILE): where governor's CPU and memory go. The channel
// is closed once both are written.
func profileGovernor(b *testing.B, dir, addr string, span time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if dir == "" {
		close(done)
		return done
	}
	get := func(path, file string) error {
		c := http.Client{Timeout: span + time.Minute}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", path, resp.Status, raw)
		}
		return os.WriteFile(filepath.Join(dir, file), raw, 0o644)
	}
	go func() {
		defer close(done)
		seconds := strconv.Itoa(int((span - 5*time.Second) / time.Second))
		if err := errors.Join(get("/debug/pprof/profile?seconds="+seconds, "cpu.prof"), get("/debug/pprof/heap", "heap.prof")); err != nil {
			b.Errorf("profiling governor: %v", err)
		}
	}()
	return done
}

// profileAPIServer takes a CPU profile of the API server over most of a
// window, when PERF_APISERVER_PROFILE names a file to write it to (go tool
// pprof reads it): where its time goes under governor's load. The channel
// is closed once it is written.
func profileAPIServer(b *testing.B, d *deployment, span time.Duration) <-chan struct{} {
	done := make(chan struct{})
	path := os.Getenv("PERF_APISERVER_PROFILE")
	if path == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		raw, err := d.Clientset.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", strconv.Itoa(int((span-5*time.Second)/time.Second))).
			Timeout(span + time.Minute).DoRaw(context.Background())
		if err == nil {
			err = os.WriteFile(path, raw, 0o644)
		}
		if err != nil {
			b.Errorf("profiling the API server: %v", err)
		}
	}()
	return done
}

// loopCounts are the Ns of BenchmarkScale: PERF_LOOPS, 100 by default.
func loopCounts(b *testing.B) []int {
	env := os.Getenv("PERF_LOOPS")
	if env == "" {
		return []int{100}
	}
	var ns []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("PERF_LOOPS=%q: want loop counts separated by commas, e.g. 100,1000", env)
		}
		ns = append(ns, n)
	}
	return ns
}

// statusFlush is the --status-flush-interval of governor's args (the last
// one wins; governor's default, 1s, when there is none).
func statusFlush(b *testing.B, args []string) time.Duration {
	b.Helper()
	flush := time.Second
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--status-flush-interval="); ok {
			f, err := time.ParseDuration(v)
			if err != nil {
				b.Fatalf("%s: %v", a, err)
			}
			flush = f
		}
	}
	return flush
}

// historyLimit keeps every tick of a window in status.history until it has
// been read, a flush interval and more after the window ends.
func historyLimit(window, flush, interval time.Duration) int32 {
	return int32(min((window+flush+10*time.Second)/interval, 200))
}

// makeLoops creates loops from to to-1 (l0000, l0001, ...), a few at a
// time.
func makeLoops(b *testing.B, d *deployment, ns string, from, to int, loop func(name string) *v1alpha1.ControlLoop) {
	b.Helper()
	parallel(b, to-from, func(i int) error {
		return d.Admin.Create(context.Background(), loop(loopName(from+i)))
	})
}

// pushAll pushes a jitter in the hold band to each of n loops.
func pushAll(b *testing.B, d *deployment, g *governor, ns string, n int) {
	b.Helper()
	parallel(b, n, func(i int) error {
		// As a managed system would: again, after a while, when the
		// API server is too busy to take it now.
		for try := 1; ; try++ {
			err := g.Push(ns, loopName(i), pushToken, map[string]float64{"jitter": jitterHold})
			if !errors.Is(err, deployed.ErrTryAgain) || try == 10 {
				return err
			}
			time.Sleep(time.Second)
		}
	})
	g.Check(b)
}

func loopName(i int) string { return fmt.Sprintf("l%04d", i) }

// parallel runs f(0) ... f(n-1), 8 at a time, and fails on the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// measured is one measurement window.
type measured struct {
	from, to sample
	ticks    int             // started within the window
	lags     []time.Duration // of those ticks, against when they were due
	// catchUp is how long after the window's end every loop's status
	// showed its ticks up to the end: status writes lag behind the ticks.
	catchUp time.Duration
}

func (m measured) ticksPerSecond() float64 {
	return float64(m.ticks) / m.to.at.Sub(m.from.at).Seconds()
}

// window samples governor and the control plane at the start and end of a
// window of length span, then waits for the window's quiet ticks to be
// flushed and counts them in the loops' status.history.
func window(b *testing.B, d *deployment, g *governor, ns string, span, interval time.Duration) measured {
	b.Helper()
	var m measured
	var err error
	g.Check(b)
	if m.from, err = takeSample(d, g); err != nil {
		b.Fatal(err)
	}
	time.Sleep(span)
	g.Check(b)
	if m.to, err = takeSample(d, g); err != nil {
		b.Fatal(err)
	}
	time.Sleep(g.flush + time.Second)
	list := caughtUp(b, d, g, ns, m.to.at, interval)
	m.catchUp = time.Since(m.to.at)
	for _, l := range list.Items {
		h := l.Status.History
		for i, e := range h {
			at := e.Time.Time
			if at.Before(m.from.at) || !at.Before(m.to.at) {
				continue
			}
			m.ticks++
			if i > 0 {
				m.lags = append(m.lags, at.Sub(h[i-1].Time.Add(interval)))
			}
		}
	}
	return m
}

// behindReport says, of the first loops whose statuses stayed behind, what
// their statuses show and what governor logged about them.
func behindReport(g *governor, behind []v1alpha1.ControlLoop) string {
	var out strings.Builder
	log := strings.Split(g.Output(), "\n")
	for _, l := range behind[:min(len(behind), 3)] {
		fmt.Fprintf(&out, "\n%s: lastTick %v, sequence %d, owner %+v, conditions %+v; governor's log about it:", l.Name, l.Status.LastTick, l.Status.Sequence, l.Status.Owner, l.Status.Conditions)
		name := `"name":"` + l.Name + `"`
		var lines []string
		for _, line := range log {
			if strings.Contains(line, name) || strings.Contains(line, "/"+l.Name+`"`) {
				lines = append(lines, line)
			}
		}
		for _, line := range lines[max(len(lines)-10, 0):] {
			fmt.Fprintf(&out, "\n  %.600s", line)
		}
	}
	// The member Lease's renewals and epochs: a lapse holds every runner.
	var member []string
	for _, line := range log {
		if strings.Contains(line, `"logger":"shard"`) {
			member = append(member, line)
		}
	}
	fmt.Fprintf(&out, "\nthe member Lease (%d lines, the last 20):", len(member))
	for _, line := range member[max(len(member)-20, 0):] {
		fmt.Fprintf(&out, "\n  %.400s", line)
	}
	return out.String()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// listLoops lists the loops of a namespace a page of 100 at a time (1,000
// loops with their histories in one answer are tens of MB, which a
// saturated API server cut off: "stream error ... INTERNAL_ERROR"), each
// page tried again for up to a minute.
func listLoops(c client.Client, ns string) (v1alpha1.ControlLoopList, error) {
	var all v1alpha1.ControlLoopList
	next := ""
	for {
		var page v1alpha1.ControlLoopList
		var err error
		for try := 0; try < 30; try++ {
			if err = c.List(context.Background(), &page, client.InNamespace(ns), client.Limit(100), client.Continue(next)); err == nil {
				break
			}
			time.Sleep(2 * time.Second)
		}
		if err != nil {
			return all, err
		}
		all.Items = append(all.Items, page.Items...)
		if next = page.Continue; next == "" {
			return all, nil
		}
	}
}

// caughtUp waits, for up to 5 minutes, until the status of every loop of a
// namespace shows its ticks up to a time (status writes are made off the
// ticks' path, and lag behind them on a slow API server), and returns the
// loops.
func caughtUp(b *testing.B, d *deployment, g *governor, ns string, until time.Time, interval time.Duration) v1alpha1.ControlLoopList {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		g.Check(b)
		list, err := listLoops(d.Admin, ns)
		if err != nil {
			b.Fatal(err)
		}
		var behind []v1alpha1.ControlLoop
		for _, l := range list.Items {
			if l.Status.LastTick == nil || l.Status.LastTick.Add(interval).Before(until) {
				behind = append(behind, l)
			}
		}
		if len(behind) == 0 {
			return list
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d loops' statuses still behind the window's end after 5 minutes%s", len(behind), behindReport(g, behind))
		}
		time.Sleep(time.Second)
	}
}
