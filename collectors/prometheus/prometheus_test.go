//go:build integration

package prometheus_test

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"governor.dev/governor/collectors"
	promcollector "governor.dev/governor/collectors/prometheus"
)

// waitScraped waits for the first scrape of the exporter: Prometheus hands
// its targets to the scrape loop about 5s after it starts.
func waitScraped(t *testing.T, c *promcollector.Collector) {
	t.Helper()
	eventually(t, c, `up{job="exporter"}`, hasValue(1))
}

// A sum over the exporter's series is the exporter's figure after a scrape,
// stamped with the tick's time, and follows the exporter at the next scrape.
func TestSumFollowsTheExporter(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	e.queue.WithLabelValues("robot-control-0").Set(4)
	e.queue.WithLabelValues("robot-control-1").Set(2)
	e.requests.WithLabelValues("factory", "robot-control", "GET", "HTTP/1.1", "200", "server").Add(120)
	e.requests.WithLabelValues("factory", "robot-control", "POST", "HTTP/1.1", "503", "server").Add(3)
	e.requests.WithLabelValues("factory", "telemetry-upload", "PUT", "HTTP/1.1", "200", "server").Add(1000)
	s := startPrometheus(t, []string{e.addr}, "")
	c := newCollector(t, s.URL)

	started := time.Now()
	waitScraped(t, c)
	t.Logf("first scrape seen %s after prometheus was ready", time.Since(started).Round(time.Millisecond))

	now := tickNow()
	m := collectAt(c, `sum(robot_control_queue_depth)`, now)
	require.Empty(t, m.Err)
	require.NotNil(t, m.Value)
	assert.Equal(t, 6.0, *m.Value)
	assert.True(t, now.Equal(m.ObservedAt), "a sum is stamped with the evaluation time: %s, want %s", m.ObservedAt, now)
	assert.Equal(t, map[string]any{"labels": map[string]any{}}, m.Fields)

	m = collectAt(c, `sum(hubble_http_requests_total{destination_workload="robot-control"})`, now)
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 123.0, *m.Value)

	m = collectAt(c, `robot_control_queue_depth{pod="robot-control-0"}`, now)
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 4.0, *m.Value)
	assert.Equal(t, map[string]any{"labels": map[string]any{
		"__name__": "robot_control_queue_depth", "instance": e.addr, "job": "exporter", "pod": "robot-control-0",
	}}, m.Fields)

	// The gauge changes: the next scrape shows it.
	before := tickNow()
	e.queue.WithLabelValues("robot-control-0").Set(9)
	changed := time.Now()
	eventually(t, c, `sum(robot_control_queue_depth)`, hasValue(11))
	took := time.Since(changed)
	t.Logf("a changed gauge showed after %s (scrape interval 1s)", took.Round(time.Millisecond))

	// The query is evaluated at the tick's time, not at the server's now.
	m = collectAt(c, `sum(robot_control_queue_depth)`, before)
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 6.0, *m.Value, "at %s, before the change", before)
	assert.True(t, before.Equal(m.ObservedAt))

	// The series goes away: Prometheus marks it stale at the next scrape
	// and the collector has no value (the controller counts it stale).
	e.queue.Reset()
	m = eventually(t, c, `sum(robot_control_queue_depth)`, func(m collectors.Metric) bool { return m.Value == nil })
	assert.Equal(t, "no data for sum(robot_control_queue_depth)", m.Err)
}

// ObservedAt is the time of the sample Prometheus holds: a selected series'
// scrape time (so data that stopped being written ages), the evaluation
// time for what a query computes.
func TestObservedAtIsTheSampleTime(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	e.queue.WithLabelValues("robot-control-0").Set(4)
	// Federated (or pushed) data carries its own time and gets no
	// staleness marker: 30s after its last update it is still the answer.
	written := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	e.stamped.set(42, written)
	rules := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(rules, []byte(`groups:
  - name: robot-control
    rules:
      - record: robot_control:queue_depth:sum
        expr: sum(robot_control_queue_depth)
`), 0o600))
	s := startPrometheus(t, []string{e.addr}, "rule_files: ["+rules+"]\n")
	c := newCollector(t, s.URL)
	waitScraped(t, c)

	now := tickNow()
	m := collectAt(c, `factory_line_throughput`, now)
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 42.0, *m.Value)
	assert.True(t, written.Equal(m.ObservedAt), "observed at %s, want the sample's time %s", m.ObservedAt, written)
	assert.GreaterOrEqual(t, now.Sub(m.ObservedAt), 30*time.Second, "its age, as the controller computes it")

	// A scraped series: its last scrape, within one interval of now.
	const sel = `robot_control_queue_depth{pod="robot-control-0"}`
	m = collectAt(c, sel, now)
	require.NotNil(t, m.Value, show(m))
	scraped := collectAt(c, `timestamp(`+sel+`)`, now)
	require.NotNil(t, scraped.Value, show(scraped))
	assert.True(t, time.UnixMilli(int64(math.Round(*scraped.Value*1000))).Equal(m.ObservedAt),
		"observed at %s, scraped at %v", m.ObservedAt, *scraped.Value)
	assert.False(t, m.ObservedAt.After(now))
	assert.Less(t, now.Sub(m.ObservedAt), 2*time.Second)

	// A query ending in a comment still finds its sample's time.
	m2 := collectAt(c, sel+` # the robot controller's queue`, now)
	require.NotNil(t, m2.Value, show(m2))
	assert.True(t, m.ObservedAt.Equal(m2.ObservedAt))

	// A recording rule: its last evaluation, within one interval of now.
	eventually(t, c, `robot_control:queue_depth:sum`, hasValue(4))
	now = tickNow()
	m = collectAt(c, `robot_control:queue_depth:sum`, now)
	require.NotNil(t, m.Value, show(m))
	evaluated := collectAt(c, `timestamp(robot_control:queue_depth:sum)`, now)
	require.NotNil(t, evaluated.Value, show(evaluated))
	assert.True(t, time.UnixMilli(int64(math.Round(*evaluated.Value*1000))).Equal(m.ObservedAt),
		"observed at %s, evaluated at %v", m.ObservedAt, *evaluated.Value)
	assert.False(t, m.ObservedAt.After(now))
	assert.Less(t, now.Sub(m.ObservedAt), 2*time.Second)

	// Computed values are stamped with the evaluation time.
	m = collectAt(c, `max(factory_line_throughput)`, now)
	require.NotNil(t, m.Value, show(m))
	assert.True(t, now.Equal(m.ObservedAt))
}

// Several series give no value, each series' value by its labels, and say
// how to get one.
func TestSeveralSeries(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	e.queue.WithLabelValues("robot-control-0").Set(4)
	e.queue.WithLabelValues("robot-control-1").Set(2.5)
	e.queue.WithLabelValues("robot-control-2").Set(math.NaN())
	s := startPrometheus(t, []string{e.addr}, "")
	c := newCollector(t, s.URL)
	waitScraped(t, c)

	now := tickNow()
	m := collectAt(c, `sum by (pod) (robot_control_queue_depth)`, now)
	assert.Nil(t, m.Value)
	assert.Equal(t, "3 series: use an aggregation such as sum() for a single value", m.Err)
	assert.Equal(t, map[string]any{"series": map[string]any{
		`{pod="robot-control-0"}`: 4.0,
		`{pod="robot-control-1"}`: 2.5,
		`{pod="robot-control-2"}`: nil, // NaN has no JSON form
	}}, m.Fields)
	assert.True(t, now.Equal(m.ObservedAt))

	m = collectAt(c, `robot_control_queue_depth{pod!="robot-control-2"}`, now)
	assert.Nil(t, m.Value)
	assert.Equal(t, "2 series: use an aggregation such as sum() for a single value", m.Err)
	inst := e.addr
	assert.Equal(t, map[string]any{"series": map[string]any{
		`robot_control_queue_depth{instance="` + inst + `", job="exporter", pod="robot-control-0"}`: 4.0,
		`robot_control_queue_depth{instance="` + inst + `", job="exporter", pod="robot-control-1"}`: 2.5,
	}}, m.Fields)
	assert.False(t, m.ObservedAt.IsZero())

	m = collectAt(c, `robot_control_queue_depth{pod="robot-control-9"}`, now)
	assert.Nil(t, m.Value)
	assert.Equal(t, `no data for robot_control_queue_depth{pod="robot-control-9"}`, m.Err)
	assert.Empty(t, m.Fields)
}

// The p95 of Hubble's latency histogram, as the design's loops ask for it.
func TestHistogramQuantileOfHubbleLatency(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	robot := e.duration.WithLabelValues("factory", "robot-control", "GET", "server")
	other := e.duration.WithLabelValues("factory", "telemetry-upload", "PUT", "server")
	s := startPrometheus(t, []string{e.addr}, "")
	c := newCollector(t, s.URL)
	waitScraped(t, c)

	// No requests in the window: the quantile is NaN, and there is no value.
	m := eventually(t, c, p95Latency, func(m collectors.Metric) bool { return strings.Contains(m.Err, "NaN") })
	assert.Nil(t, m.Value)
	assert.Equal(t, "the query returns NaN (a division of zero by zero, or a quantile of no observations?): "+p95Latency, m.Err)

	// 90 requests of 15ms and 10 of 200ms: the 95th is the 5th of the 10 in
	// the (0.1, 0.25] bucket, 0.1 + 0.15*5/10 = 0.175 by Prometheus'
	// linear interpolation. Other workloads do not count.
	for range 90 {
		robot.Observe(0.015)
	}
	for range 10 {
		robot.Observe(0.2)
	}
	for range 50 {
		other.Observe(4)
	}
	m = eventually(t, c, p95Latency, func(m collectors.Metric) bool { return m.Value != nil })
	assert.InDelta(t, 0.175, *m.Value, 0.005)
	assert.Empty(t, m.Err)

	p50 := strings.Replace(p95Latency, "0.95", "0.5", 1)
	m = collectAt(c, p50, tickNow())
	require.NotNil(t, m.Value, show(m))
	assert.InDelta(t, 0.01+0.015*50/90, *m.Value, 0.001)
}

// Queries Prometheus refuses, and results that are not one number.
func TestBadQueriesAndResultsThatAreNotANumber(t *testing.T) {
	t.Parallel()
	s := startPrometheus(t, nil, "")
	c := newCollector(t, s.URL)
	now := tickNow()

	for _, q := range []string{
		`sum(rate(hubble_http_requests_total[1m])`,
		`rate(hubble_http_requests_total)`,
		`histogram_quantile(0.95, sum by (le) (rate(hubble_http_request_duration_seconds_bucket{destination_workload=robot-control}[1m])))`,
	} {
		m := collectAt(c, q, now)
		assert.Nil(t, m.Value)
		// Prometheus' own message, as its API gives it.
		assert.Equal(t, "prometheus rejected the query: "+strings.TrimPrefix(rawError(t, s.URL, q), `invalid parameter "query": `), m.Err)
		assert.Contains(t, m.Err, "parse error")
		assert.NotContains(t, m.Err, "\n")
		t.Logf("%s -> %s", q, m.Err)
	}

	for q, want := range map[string]string{
		`vector(1) / vector(0)`: "the query returns +Inf: vector(1) / vector(0)",
		`-1/0`:                  "the query returns -Inf: -1/0",
		`0/0`:                   "the query returns NaN (a division of zero by zero, or a quantile of no observations?): 0/0",
		`up[1m]`:                "the query returns a range vector (matrix), not a single value: drop the [range] selector or wrap it in a function such as rate() and an aggregation such as sum()",
		`"robot-control"`:       "the query returns a string, not a number",
	} {
		m := collectAt(c, q, now)
		assert.Nil(t, m.Value, q)
		assert.Equal(t, want, m.Err, q)
	}

	m := collectAt(c, `scalar(vector(2.5))`, now)
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 2.5, *m.Value)
	assert.True(t, now.Equal(m.ObservedAt))
}

// rawError is the error Prometheus' query API itself gives for a query.
func rawError(t *testing.T, base, query string) string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct{ Error string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.NotEmpty(t, body.Error)
	return body.Error
}

// Warnings Prometheus gives with a result go into Fields["warnings"]: here
// from a remote_read endpoint that is down, next to the local data.
func TestWarnings(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	e.queue.WithLabelValues("robot-control-0").Set(4)
	down := freeAddr(t)
	s := startPrometheus(t, []string{e.addr}, fmt.Sprintf("remote_read:\n  - url: http://%s/api/v1/read\n    read_recent: true\n", down))
	c := newCollector(t, s.URL)

	m := eventually(t, c, `sum(robot_control_queue_depth)`, hasValue(4))
	require.Contains(t, m.Fields, "warnings")
	ws := m.Fields["warnings"].([]any)
	require.Len(t, ws, 1)
	assert.Contains(t, ws[0], "remote_read")
	assert.Contains(t, ws[0], down)
	assert.Contains(t, m.Fields, "labels")
	t.Logf("warning: %s", ws[0])
}

// HTTP errors from a real Prometheus with basic authentication, and a
// RoundTripper that authenticates (errors from other servers:
// TestHTTPErrorsFromOtherServers).
func TestHTTPErrorsAndRoundTripper(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(webConfig, []byte("basic_auth_users:\n  governor: "+string(hash)+"\n"), 0o600))
	s := startPrometheusWith(t, nil, "", &basicAuth{"governor", "s3cret"}, "--web.config.file="+webConfig)

	m := collectAt(newCollector(t, s.URL), `vector(1)`, tickNow())
	assert.Nil(t, m.Value)
	assert.Equal(t, "prometheus at "+s.URL+" answered HTTP 401 Unauthorized", m.Err)

	c, err := promcollector.New(promcollector.Options{Address: s.URL, RoundTripper: basicAuth{"governor", "s3cret"}})
	require.NoError(t, err)
	m = collectAt(c, `vector(1)`, tickNow())
	require.NotNil(t, m.Value, show(m))
	assert.Equal(t, 1.0, *m.Value)

	c, err = promcollector.New(promcollector.Options{Address: s.URL + "/prometheus", RoundTripper: basicAuth{"governor", "s3cret"}})
	require.NoError(t, err)
	m = collectAt(c, `vector(1)`, tickNow())
	assert.Equal(t, "prometheus at "+s.URL+"/prometheus answered HTTP 404 Not Found (is the address Prometheus' base URL?): 404 page not found", m.Err)
}

type basicAuth struct{ user, password string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return http.DefaultTransport.RoundTrip(r)
}

// Prometheus stops: a clear error at once; it comes back on the same port
// and data directory: values again, the old ones included.
func TestPrometheusStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	e := newExporter(t)
	e.queue.WithLabelValues("robot-control-0").Set(4)
	s := startPrometheus(t, []string{e.addr}, "")
	c := newCollector(t, s.URL)
	eventually(t, c, `sum(robot_control_queue_depth)`, hasValue(4))
	before := tickNow()

	s.stop()
	m := collectAt(c, `sum(robot_control_queue_depth)`, tickNow())
	assert.Nil(t, m.Value)
	assert.Equal(t, "prometheus at "+s.URL+" is unreachable: dial tcp "+s.addr+": connect: connection refused", m.Err)

	e.queue.WithLabelValues("robot-control-0").Set(7)
	start := time.Now()
	s.start()
	m = eventually(t, c, `sum(robot_control_queue_depth)`, hasValue(7))
	assert.Empty(t, m.Err)
	t.Logf("values again %s after the restart", time.Since(start).Round(time.Millisecond))

	m = collectAt(c, `sum(robot_control_queue_depth)`, before)
	require.NotNil(t, m.Value, "the data from before the restart: %s", show(m))
	assert.Equal(t, 4.0, *m.Value)
}
