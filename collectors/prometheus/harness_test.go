//go:build integration

package prometheus_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors"
	promcollector "governor.dev/governor/collectors/prometheus"
)

// The Prometheus server the tests run: Debian's package "prometheus"
// (apt-get install -y prometheus) puts it at /usr/bin/prometheus.
const (
	prometheusBinary  = "prometheus"
	prometheusPackage = "prometheus"
	// waitFor bounds every wait on the server (start, scrape, stop).
	waitFor = 15 * time.Second
)

// exporter is what the test Prometheus scrapes: a promhttp endpoint on
// loopback with metrics named as in a Cilium cluster with Hubble's httpV2
// metrics (labelsContext=destination_namespace,destination_workload).
type exporter struct {
	// queue is a gauge: robot_control_queue_depth{pod}.
	queue *prometheus.GaugeVec
	// requests is Hubble's request counter: hubble_http_requests_total.
	requests *prometheus.CounterVec
	// duration is Hubble's latency histogram (default buckets, as Hubble's):
	// hubble_http_request_duration_seconds.
	duration *prometheus.HistogramVec
	// stamped is a gauge exposed with an explicit timestamp, as federated or
	// pushed data is: Prometheus writes no staleness marker for it.
	stamped *stampedGauge
	// addr is host:port.
	addr string
}

var hubbleLabels = []string{"destination_namespace", "destination_workload", "method", "reporter"}

func newExporter(t *testing.T) *exporter {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := &exporter{
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "robot_control_queue_depth", Help: "Commands waiting in the robot controller's queue.",
		}, []string{"pod"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "hubble", Name: "http_requests_total", Help: "Count of HTTP requests",
		}, append(hubbleLabels[:2:2], "method", "protocol", "status", "reporter")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "hubble", Name: "http_request_duration_seconds", Help: "Quantiles of HTTP request duration in seconds",
		}, hubbleLabels),
		stamped: &stampedGauge{desc: prometheus.NewDesc("factory_line_throughput", "Parts per minute, as federated.", nil, nil)},
	}
	reg.MustRegister(e.queue, e.requests, e.duration, e.stamped)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	e.addr = strings.TrimPrefix(srv.URL, "http://")
	return e
}

// stampedGauge is one gauge with a timestamp of its own; none until set.
type stampedGauge struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	v    float64
	at   time.Time
}

func (g *stampedGauge) set(v float64, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.v, g.at = v, at
}

func (g *stampedGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *stampedGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.at.IsZero() {
		return
	}
	ch <- prometheus.NewMetricWithTimestamp(g.at, prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.v))
}

// server is a prometheus process the test started; it is killed in
// t.Cleanup.
type server struct {
	t    *testing.T
	bin  string
	dir  string // data directory, kept across restarts
	addr string // 127.0.0.1:port, kept across restarts
	URL  string

	flags []string
	auth  *basicAuth

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

// startPrometheus runs prometheus on a free loopback port with its own data
// directory, scraping and evaluating every second. extra is appended to the
// configuration file (remote_read:, rule_files:, ...).
func startPrometheus(t *testing.T, scrape []string, extra string) *server {
	t.Helper()
	return startPrometheusWith(t, scrape, extra, nil)
}

// startPrometheusWith is startPrometheus with more flags; auth is what the
// readiness probe presents, if the flags make Prometheus ask for it.
func startPrometheusWith(t *testing.T, scrape []string, extra string, auth *basicAuth, flags ...string) *server {
	t.Helper()
	bin, err := exec.LookPath(prometheusBinary)
	if err != nil {
		t.Fatalf("%s not found on PATH: the tests need the Prometheus server: install Debian's package %q (apt-get install -y %s, or make test-servers)",
			prometheusBinary, prometheusPackage, prometheusPackage)
	}
	dir := t.TempDir()
	var targets []string
	for _, s := range scrape {
		targets = append(targets, fmt.Sprintf("%q", s))
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: [%s]
%s`, strings.Join(targets, ", "), extra)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600))
	s := &server{t: t, bin: bin, dir: dir, addr: freeAddr(t), flags: flags, auth: auth}
	s.URL = "http://" + s.addr
	t.Cleanup(s.kill)
	s.start()
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// start starts prometheus and waits until /-/ready answers 200.
func (s *server) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{
		"--config.file=" + filepath.Join(s.dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(s.dir, "data"),
		"--web.listen-address=" + s.addr,
		"--log.level=warn",
	}, s.flags...)...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done, s.logs = cmd, done, logs
	s.mu.Unlock()

	deadline := time.Now().Add(waitFor)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			t.Fatalf("prometheus exited before it was ready: %v\n%s", cmd.ProcessState, logs)
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/-/ready", nil)
		if s.auth != nil {
			req.SetBasicAuth(s.auth.user, s.auth.password)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s/-/ready within %s (last: %v)\n%s", s.URL, waitFor, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops prometheus as an orchestrator does (SIGTERM), and waits.
func (s *server) stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	require.NoError(s.t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-done:
	case <-time.After(waitFor):
		s.t.Fatalf("prometheus did not stop within %s\n%s", waitFor, s.logs)
	}
}

func (s *server) kill() {
	s.mu.Lock()
	cmd, done, logs := s.cmd, s.done, s.logs
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Kill()
		<-done
	}
	if s.t.Failed() {
		s.t.Logf("prometheus log:\n%s", logs)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// eventually collects the query every 100ms until ok holds of the metric,
// for at most waitFor; it fails with the last metric otherwise.
func eventually(t *testing.T, c *promcollector.Collector, query string, ok func(collectors.Metric) bool) collectors.Metric {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		m := collectAt(c, query, tickNow())
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not as wanted within %s; last: %s", query, waitFor, show(m))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasValue(want float64) func(collectors.Metric) bool {
	return func(m collectors.Metric) bool { return m.Value != nil && *m.Value == want }
}

// show is a Metric in one line, for a failure message.
func show(m collectors.Metric) string {
	v := "nil"
	if m.Value != nil {
		v = fmt.Sprint(*m.Value)
	}
	return fmt.Sprintf("value=%s observedAt=%s err=%q fields=%v", v, m.ObservedAt.Format(time.RFC3339Nano), m.Err, m.Fields)
}
