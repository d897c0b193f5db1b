//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
)

// TestSamplesRunAndDashboardHasData runs what an operator runs: the local
// cluster (kwok Nodes run the Deployments' Pods), the CRD and
// config/samples applied with kubectl, bin/governor with a Hubble relay
// (simulated) and Debian's Prometheus, which scrapes governor. Every sample
// loop ticks without error; a loop of the test's acts, is clamped and
// refused, and is pushed to; then every query of every panel of the Grafana
// dashboard (config/grafana), its template variables set to that loop,
// returns data from Prometheus (governor runs sharded, --shards=auto, for
// the shards panel). kubectl shows the CRD's descriptions, the last
// action's columns, and with -o wide the loop's owner.
func TestSamplesRunAndDashboardHasData(t *testing.T) {
	cl := cluster.StartCluster(t, cluster.Options{})
	c, err := client.New(cl.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	e := &env{api: cl.APIServer, c: c}
	ctx := context.Background()
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := cl.Kubectl(args...)
		require.NoError(t, err, out)
		return out
	}

	kubectl("apply", "--server-side", "-k", filepath.Join(repo, "config/crd"))
	kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/controlloops.governor.dev")
	out := kubectl("apply", "--server-side", "-k", filepath.Join(repo, "config/samples"))
	samples := []string{"factory-qos", "factory-qos-p95", "factory-scaling", "factory-priorities", "orange-scaling", "orange-priorities"}
	for _, name := range samples {
		assert.Contains(t, out, "controlloop.governor.dev/"+name+" serverside-applied")
	}
	e.deployment(t, "factory", "web", 2)
	e.deployment(t, "factory", "telemetry-upload", 2)
	e.deployment(t, "factory", "video-archive", 2)

	// The test's loop: asks for 50 replicas of web (max 10, maxStep 2: clamped, then
	// refused in its cooldown), names a pushed metric, and has a collector that fails.
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 1)
	require.NoError(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reporter"},
		StringData: map[string]string{"token": "s3cret"}}))
	web := deploymentTarget("web", "web")
	web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10, MaxStep: 2}
	spec := echoSpec(`{"actions": [{"target": "web", "metric": "load", "set": {"replicas": 50}}]}`, web)
	spec.Interval = metav1.Duration{Duration: 500 * time.Millisecond}
	spec.Safety.Cooldown = metav1.Duration{Duration: 2 * time.Second}
	spec.Collectors = []v1alpha1.CollectorSpec{
		{Name: "load", Push: &v1alpha1.PushCollector{TokenSecret: "reporter"}},
		{Name: "broken", Prometheus: &v1alpha1.PrometheusCollector{Query: "rate(("}},
	}
	e.loop(t, ns, "dash", spec)

	metricsAddr := deployed.FreeAddr(t)
	prom := startPrometheusScraping(t, metricsAddr)
	hubble := relaytest.Start(t, relay.Config{Seed: 1, Routes: []relay.Route{{
		Source:      relay.Workload{Namespace: "factory", Name: "edge-gateway"},
		Destination: relay.Workload{Namespace: "factory", Name: "robot-control"},
		Plant:       sim.NewScripted(5*time.Millisecond, 3*time.Millisecond), Rate: 100,
	}}})
	// Sharded as config/manager runs it, so that the shards panel has its
	// data: one member, its Lease in namespace default.
	pushAddr := runGovernor(t, cl.Kubeconfig, metricsAddr, "--hubble-relay", hubble.Addr(), "--prometheus-address", prom,
		"--shards=auto", "--shard-member=ops", "--leader-election-namespace=default")
	stopPushing := pushEvery(t, "http://"+pushAddr+"/v1/loops/"+ns+"/dash/observations", "s3cret", 500*time.Millisecond)
	defer stopPushing()

	t.Run("every sample ticks without error", func(t *testing.T) {
		for _, name := range samples {
			eventually(t, 2*time.Minute, func() (bool, string) {
				l := e.get(t, "factory", name)
				_, last := lastEntry(l)
				return l.Status.Tick >= 3, fmt.Sprintf("%s: tick %d, last %s", name, l.Status.Tick, last)
			})
			l := e.get(t, "factory", name)
			_, last := lastEntry(l)
			t.Logf("%s: phase %s, tick %d, last: %s", name, l.Status.Phase, l.Status.Tick, last)
			for _, h := range l.Status.History {
				assert.Empty(t, h.Error, "%s tick %d", name, h.Tick)
			}
			assert.NotEqual(t, v1alpha1.PhaseDegraded, l.Status.Phase, name)
			ready := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionReady)
			if assert.NotNil(t, ready, name) {
				assert.Equal(t, metav1.ConditionTrue, ready.Status, "%s: %s", name, ready.Message)
			}
		}
	})

	t.Run("the test's loop acts, is clamped and refused", func(t *testing.T) {
		eventually(t, time.Minute, func() (bool, string) {
			l := e.get(t, ns, "dash")
			var clamped, refused bool
			for _, h := range l.Status.History {
				for _, g := range h.Guard {
					clamped = clamped || strings.HasPrefix(g, "Clamped web")
					refused = refused || strings.HasPrefix(g, "Refused web: in cooldown")
				}
			}
			_, last := lastEntry(l)
			return l.Status.LastAction != nil && clamped && refused, last
		})
		assert.Contains(t, e.get(t, ns, "dash").Status.LastAction.Summary, `web {"replicas":`)
	})

	t.Run("kubectl", func(t *testing.T) {
		explained := kubectl("explain", "controlloop.spec.safety")
		assert.Contains(t, explained, "cooldown", "the CRD keeps its descriptions")
		assert.Regexp(t, `(?i)cooldown\s+<string>\s+\S`, explained, "a field's description follows it")
		lines := strings.Split(strings.TrimSpace(kubectl("get", "loop", "-n", ns, "dash")), "\n")
		require.Len(t, lines, 2)
		assert.Equal(t, []string{"NAME", "KIND", "STATE", "PHASE", "POLICY", "TICK", "LAST", "TICK", "LAST", "ACTION", "ACTED", "AGE"}, strings.Fields(lines[0]))
		assert.Contains(t, lines[1], `web {"replicas":`)
		wide := strings.Split(strings.TrimSpace(kubectl("get", "loop", "-n", ns, "dash", "-o", "wide")), "\n")
		require.Len(t, wide, 2)
		header, row := strings.Fields(wide[0]), strings.Fields(wide[1])
		assert.Equal(t, "OWNER", header[len(header)-1])
		assert.Equal(t, "ops", row[len(row)-1], "the replica that runs the loop")
	})

	t.Run("every dashboard panel has data", func(t *testing.T) {
		api, err := promapi.NewClient(promapi.Config{Address: prom})
		require.NoError(t, err)
		queries := dashboardQueries(t, filepath.Join(repo, "config/grafana/governor-loops.json"), map[string]string{
			"namespace": ns, "loop": "dash", "__rate_interval": "1m",
		})
		require.GreaterOrEqual(t, len(queries), 15)
		for _, q := range queries {
			eventually(t, 2*time.Minute, func() (bool, string) {
				v, warnings, err := promv1.NewAPI(api).Query(ctx, q.expr, time.Now())
				if err != nil {
					return false, fmt.Sprintf("%s: %s: %v", q.panel, q.expr, err)
				}
				if !empty(v) {
					t.Logf("%s: %s: %s", q.panel, q.expr, strings.ReplaceAll(v.String(), "\n", "; "))
				}
				return !empty(v), fmt.Sprintf("%s: %s: no data (%v)", q.panel, q.expr, warnings)
			})
		}
	})

	t.Run("a deleted loop's series go", func(t *testing.T) {
		scrape := func() string {
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			return string(body)
		}
		mine := fmt.Sprintf(`namespace=%q`, ns) // the test's loop is alone in its namespace
		require.Contains(t, scrape(), mine)
		require.NoError(t, c.Delete(ctx, e.get(t, ns, "dash")))
		eventually(t, time.Minute, func() (bool, string) {
			body := scrape()
			return !strings.Contains(body, mine), "still there"
		})
		assert.Contains(t, scrape(), `loop="factory-qos"`, "the other loops' series stay")
	})
}

// panelQuery is one query of a dashboard panel (or template variable).
type panelQuery struct{ panel, expr string }

// dashboardQueries are the queries of every panel of a Grafana dashboard
// (rows' panels too), and the series selector of each label_values template
// variable, with the variables replaced by vars.
func dashboardQueries(t *testing.T, path string, vars map[string]string) []panelQuery {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	variable := regexp.MustCompile(`\$\{?(\w+)\}?`)
	substitute := func(expr string) string {
		return variable.ReplaceAllStringFunc(expr, func(v string) string {
			name := strings.Trim(v, "${}")
			value, ok := vars[name]
			require.True(t, ok, "variable %s of %q has no value in the test", name, expr)
			return value
		})
	}
	var out []panelQuery
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			}
			for _, target := range p.Targets {
				out = append(out, panelQuery{panel: p.Title, expr: substitute(target.Expr)})
			}
			var nested []panel
			for _, n := range p.Panels {
				var np panel
				require.NoError(t, json.Unmarshal(n, &np))
				nested = append(nested, np)
			}
			walk(nested)
		}
	}
	walk(dash.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		m := labelValues.FindStringSubmatch(fmt.Sprint(q["query"]))
		require.NotNil(t, m, "variable %s: want label_values(SELECTOR, LABEL), got %v", v.Name, v.Query)
		out = append(out, panelQuery{panel: "variable " + v.Name, expr: substitute(m[1])})
	}
	return out
}

func empty(v model.Value) bool {
	switch v := v.(type) {
	case model.Vector:
		return len(v) == 0
	case model.Matrix:
		return len(v) == 0
	case *model.Scalar, *model.String:
		return false
	}
	return true
}

// runGovernor runs bin/governor on the cluster, its metrics on metricsAddr
// (plain HTTP), without leader election, with extra flags; it returns the
// push endpoint's address. It is stopped (SIGTERM) when the test ends.
func runGovernor(t *testing.T, kubeconfig, metricsAddr string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join(repo, "policies"))))
	for name, files := range testBundles {
		for file, body := range files {
			p := filepath.Join(dir, name, file)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		}
	}
	probe, pushAddr := deployed.FreeAddr(t), deployed.FreeAddr(t)
	var logs syncBuffer
	cmd := exec.Command(governorBinary(t), append([]string{"run", "--bundles", dir, "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--health-probe-bind-address", probe, "--metrics-bind-address", metricsAddr, "--push-bind-address", pushAddr, "--metrics-secure=false",
		"--prometheus-namespaces=*"}, extra...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})
	eventually(t, time.Minute, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("governor exited: %s", logs.String())
		default:
		}
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return pushAddr
}

// pushEvery pushes {"load": N} to url every period until stopped.
func pushEvery(t *testing.T, url, token string, period time.Duration) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(fmt.Sprintf(`{"load": %d}`, i%10)))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(period):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); <-stopped }) }
	t.Cleanup(stop)
	return stop
}

// startPrometheusScraping runs Debian's Prometheus on a free loopback port,
// scraping target (host:port, /metrics) every second, and returns its URL.
// It is stopped when the test ends.
func startPrometheusScraping(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found on PATH: the test needs Debian's Prometheus server (apt-get install -y prometheus, or make test-servers)")
	}
	dir := t.TempDir()
	config := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"+
		"scrape_configs:\n  - job_name: governor\n    static_configs:\n      - targets: [%q]\n", target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600))
	addr := deployed.FreeAddr(t)
	var logs syncBuffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	eventually(t, time.Minute, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", logs.String())
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return url
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
