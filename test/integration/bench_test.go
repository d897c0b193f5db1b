//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stretchr/testify/require"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/testkeys"
)

const desiredEgress = "governor.dev/egress-bandwidth"

// warmupTicks are left out of latency figures: the first ticks of a fresh
// manager also start its informers.
const warmupTicks = 5

// tickerSpec is a loop on the ticker bundle: one bandwidth change on target
// "t" every tick, nothing held back by cooldowns.
func tickerSpec(deployment string, interval time.Duration, historyLimit int32) v1alpha1.ControlLoopSpec {
	return v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval: metav1.Duration{Duration: interval},
		Policy:   v1alpha1.PolicySpec{Bundle: "ticker", Decision: "test/ticker/decision"},
		Targets: []v1alpha1.TargetSpec{{Name: "t", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: deployment},
			Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("1M"), Max: resource.MustParse("1000000M")}}},
		Safety:       v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: time.Minute}, MaxActions: 5},
		HistoryLimit: historyLimit,
	}
}

// BenchmarkTickToPatch measures, over b.N ticks (at most 190: they must
// still be in the loop's history; the first 5 left out), the time from a tick's start to its
// patch being seen by a watch on the API server. Run with -benchtime=Nx.
func BenchmarkTickToPatch(b *testing.B) {
	n := min(b.N, 190) + warmupTicks
	e := newEnv(b)
	ctx := context.Background()
	ns := e.namespace(b)
	e.deployment(b, ns, "target", 1)
	w, err := client.NewWithWatch(e.api.Config, client.Options{Scheme: e.c.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	watcher, err := w.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Stop()
	e.startManager(b)
	b.ResetTimer()
	e.loop(b, ns, "ticker", tickerSpec("target", 100*time.Millisecond, 200))

	seen := map[int64]time.Time{} // tick -> when its value was seen
	timeout := time.After(time.Duration(n)*time.Second + 30*time.Second)
	for len(seen) < n {
		select {
		case ev := <-watcher.ResultChan():
			if ev.Type != watch.Modified {
				continue
			}
			at := time.Now()
			v := ev.Object.(*appsv1.Deployment).Annotations[desiredEgress]
			m, err := strconv.ParseInt(strings.TrimSuffix(v, "M"), 10, 64)
			if err != nil || !strings.HasSuffix(v, "M") {
				continue // "1G" and friends: ticks that land on a round value
			}
			if _, ok := seen[m-1000]; !ok {
				seen[m-1000] = at
			}
		case <-timeout:
			b.Fatalf("saw %d of %d ticks", len(seen), n)
		}
	}
	b.StopTimer()
	// Each tick writes its status after its patch: wait for the newest.
	var last int64
	for tick := range seen {
		last = max(last, tick)
	}
	var l *v1alpha1.ControlLoop
	eventually(b, 10*time.Second, func() (bool, string) {
		l = e.get(b, ns, "ticker")
		return l.Status.Tick >= last, fmt.Sprintf("status at tick %d, want %d", l.Status.Tick, last)
	})
	var lat []time.Duration
	for _, h := range l.Status.History {
		// The first ticks also wait for the manager's caches to fill.
		if at, ok := seen[h.Tick]; ok && len(h.Applied) == 1 && h.Tick > warmupTicks {
			lat = append(lat, at.Sub(h.Time.Time))
		}
	}
	if len(lat) == 0 || len(lat) < (n-warmupTicks)/2 {
		b.Fatalf("only %d ticks matched in history", len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(ms(lat[len(lat)/2]), "ms-median")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "ms-p99")
	b.ReportMetric(float64(len(lat)), "ticks")
}

// BenchmarkTicksPerSecond runs 100 loops at 100ms on one controller and
// reports the ticks per second it sustains (1,000/s if it keeps every loop's
// pace) over 10 s: loops that change their own Deployment every tick
// ("acting", the worst case), and loops whose policy holds ("holding", the
// usual case between changes).
func BenchmarkTicksPerSecond(b *testing.B) {
	const loops = 100
	const interval = 100 * time.Millisecond
	const window = 10 * time.Second
	for _, mode := range []string{"acting", "holding"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			ns := e.namespace(b)
			for i := range loops {
				d := fmt.Sprintf("d%03d", i)
				e.deployment(b, ns, d, 1)
				spec := tickerSpec(d, interval, 20)
				if mode == "holding" {
					spec = echoSpec(`{"events": ["No Event"]}`, spec.Targets...)
					spec.Interval = metav1.Duration{Duration: interval}
				}
				e.loop(b, ns, fmt.Sprintf("l%03d", i), spec)
			}
			e.startManager(b)
			total := func() int64 {
				var list v1alpha1.ControlLoopList
				if err := e.c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
					b.Fatal(err)
				}
				var sum int64
				for _, l := range list.Items {
					sum += l.Status.Tick
				}
				return sum
			}
			time.Sleep(3 * time.Second) // all runners started, caches warm
			b.ResetTimer()
			var rates []float64
			for range b.N {
				start, t0 := total(), time.Now()
				time.Sleep(window)
				rates = append(rates, float64(total()-start)/time.Since(t0).Seconds())
			}
			b.StopTimer()
			sort.Float64s(rates)
			rate := rates[len(rates)/2]
			b.ReportMetric(rate, "ticks/s")
			b.ReportMetric(rate/(loops*float64(time.Second/interval)), "of-demand")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkPublishToDecide measures the time from publishing a new revision
// of a followed bundle to every one of 20 loops (at 100ms) having decided
// with it, with the bundle server polled every second (nginx) and with long
// polling (a server that holds the poll until a revision is published). It
// also reports the part up to the revision going live (download, verify,
// compile, the bundle's tests, prepare). Each op publishes one revision.
func BenchmarkPublishToDecide(b *testing.B) {
	const loops = 20
	for _, mode := range []string{"polling", "long-polling"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b)
			key := testkeys.RSA(b)
			var publish func(raw []byte)
			var server service
			var polling string
			switch mode {
			case "polling":
				root := b.TempDir()
				server.url, server.caCert = bundleserver.StartNginxTLS(b, root)
				publish = func(raw []byte) { publishFile(b, root, "fleet.tar.gz", raw) }
				polling = "{min_delay_seconds: 1, max_delay_seconds: 1}"
			default:
				srv := bundleserver.New()
				server.url, server.caCert = srv.StartTLS(b)
				publish = func(raw []byte) { srv.Publish("fleet.tar.gz", raw) }
				polling = "{min_delay_seconds: 60, max_delay_seconds: 120, long_polling_timeout_seconds: 30}"
			}
			cfg, err := bundles.ParseConfig([]byte(opaConfig(server, key, polling, nil)), bundles.Limits{})
			require.NoError(b, err)
			b.Cleanup(cfg.Close)
			e.bundles = bundles.NewRegistry()
			require.NoError(b, e.bundles.AddSources(cfg))
			ns := e.namespace(b)
			for i := range loops {
				spec := fleetSpec("")
				spec.Interval = metav1.Duration{Duration: 100 * time.Millisecond}
				spec.HistoryLimit = 100
				e.loop(b, ns, fmt.Sprintf("l%02d", i), spec)
			}
			publish(fleetTarball(b, "0", good, key))
			e.startManager(b)
			waitAll(b, e, ns, "fleet@0", time.Now())

			var total, live []time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				raw := fleetTarball(b, fmt.Sprint(i+1), good, key)
				time.Sleep(time.Duration(rand.Int64N(int64(time.Second)))) // not in step with the polls
				b.StartTimer()
				t0 := time.Now()
				publish(raw)
				total = append(total, waitAll(b, e, ns, fmt.Sprintf("fleet@%d", i+1), t0))
				st, _ := e.bundles.Status("fleet")
				live = append(live, st.LastActivation.Sub(t0))
			}
			b.StopTimer()
			b.ReportMetric(ms(median(total)), "ms-to-all-loops")
			b.ReportMetric(ms(median(live)), "ms-to-live")
		})
	}
}

// waitAll waits until every loop in ns has decided with revision rev and
// returns the time from t0 to the last loop's first decision with it (its
// tick's start), read from the loops' history.
func waitAll(b *testing.B, e *env, ns, rev string, t0 time.Time) time.Duration {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list v1alpha1.ControlLoopList
		require.NoError(b, e.c.List(context.Background(), &list, client.InNamespace(ns)))
		var last time.Time
		done := len(list.Items) > 0
		for _, l := range list.Items {
			first := time.Time{}
			for _, h := range l.Status.History {
				if h.Revision == rev {
					first = h.Time.Time
					break
				}
			}
			if first.IsZero() {
				done = false
				break
			}
			if first.After(last) {
				last = first
			}
		}
		if done {
			return last.Sub(t0)
		}
		if time.Now().After(deadline) {
			b.Fatalf("not every loop decided with %s within 30s", rev)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
