package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	promcollector "governor.dev/governor/collectors/prometheus"
)

// The tests that need no Prometheus server (a stand-in answers, or none);
// those against Debian's Prometheus are in prometheus_test.go (tag
// integration).

// The query of the design's latency loops, over Hubble's httpV2 histogram.
const p95Latency = `histogram_quantile(0.95, sum by (le) (rate(hubble_http_request_duration_seconds_bucket{destination_workload="robot-control"}[1m])))`

func TestNewRejectsBadAddresses(t *testing.T) {
	for address, want := range map[string]string{
		"":                              "prometheus address is empty: want a URL such as http://prometheus:9090",
		"prometheus:9090":               `prometheus address "prometheus:9090": want an http:// or https:// URL such as http://prometheus:9090`,
		"ftp://prometheus:9090":         `prometheus address "ftp://prometheus:9090": want an http:// or https:// URL such as http://prometheus:9090`,
		"http://":                       `prometheus address "http://": no host`,
		"ftp://admin:secret@prometheus": `prometheus address "ftp://admin:xxxxx@prometheus": want an http:// or https:// URL such as http://prometheus:9090`,
		"http://prometheus:9090/?x=1":   `prometheus address "http://prometheus:9090/?x=1": want a base URL without query or fragment`,
		"http://[::1":                   `prometheus address "http://[::1": missing ']' in host`,
		"http://prom etheus:9090":       `prometheus address "http://prom etheus:9090": invalid character " " in host name`,
	} {
		_, err := promcollector.New(promcollector.Options{Address: address})
		if assert.Error(t, err, address) {
			assert.Equal(t, want, err.Error())
		}
	}
	for _, address := range []string{"http://prometheus:9090", "https://prometheus.monitoring.svc:9091/", "http://host/prometheus"} {
		c, err := promcollector.New(promcollector.Options{Address: address})
		require.NoError(t, err, address)
		assert.Equal(t, strings.TrimSuffix(address, "/"), c.Address())
	}
	c, err := promcollector.New(promcollector.Options{Address: "http://admin:secret@prometheus:9090"})
	require.NoError(t, err)
	assert.Equal(t, "http://admin:xxxxx@prometheus:9090", c.Address(), "credentials stay out of messages")
	assert.Equal(t, "not a prometheus collector", c.Collect(context.Background(), loop, nil, time.Now()).Err)
	hubble := spec("", 0)
	hubble.Prometheus = nil
	assert.Equal(t, "not a prometheus collector", c.Collect(context.Background(), loop, hubble, time.Now()).Err)
}

// A Prometheus that does not answer: the query gives up after the
// collector's timeout, which Prometheus is told as well.
func TestTimeout(t *testing.T) {
	t.Parallel()
	var timeouts atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		timeouts.Store(r.Form.Get("timeout"))
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	c := newCollector(t, srv.URL)

	start := time.Now()
	m := c.Collect(context.Background(), loop, spec(p95Latency, 200*time.Millisecond), tickNow())
	took := time.Since(start)
	assert.Nil(t, m.Value)
	assert.Equal(t, "query timed out after 200ms (prometheus at "+srv.URL+")", m.Err)
	assert.GreaterOrEqual(t, took, 200*time.Millisecond)
	assert.Less(t, took, 30*time.Second, "it did not wait for the server's answer")
	assert.Equal(t, "200ms", timeouts.Load())
	t.Logf("returned after %s", took.Round(time.Millisecond))

	// No timeout in the spec: 5s, told to Prometheus; a caller's earlier
	// deadline (the tick's) wins and says so.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	m = c.Collect(ctx, loop, spec(p95Latency, 0), tickNow())
	took = time.Since(start)
	assert.Nil(t, m.Value)
	assert.Regexp(t, `^query abandoned after \d+ms: context deadline exceeded$`, m.Err)
	assert.GreaterOrEqual(t, took, 100*time.Millisecond)
	assert.Equal(t, "5s", timeouts.Load())
}

// HTTP errors from something else than Prometheus at the address.
func TestHTTPErrorsFromOtherServers(t *testing.T) {
	t.Parallel()
	// Something else at the address.
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{http.StatusServiceUnavailable, "Service Unavailable", "answered HTTP 503 Service Unavailable"},
		{http.StatusBadGateway, "<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>", "answered HTTP 502 Bad Gateway: <html><body> <h1>502 Bad Gateway</h1> </body></html>"},
		{http.StatusOK, "<html>Grafana</html>", "sent a response that is not Prometheus' query API: "},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			fmt.Fprint(w, tc.body)
		}))
		m := collectAt(newCollector(t, srv.URL), `vector(1)`, tickNow())
		srv.Close()
		assert.Nil(t, m.Value)
		assert.True(t, strings.HasPrefix(m.Err, "prometheus at "+srv.URL+" "+tc.want), m.Err)
		assert.NotContains(t, m.Err, "\n")
	}
}

// newCollector is a Collector for the address.
func newCollector(t *testing.T, address string) *promcollector.Collector {
	t.Helper()
	c, err := promcollector.New(promcollector.Options{Address: address})
	require.NoError(t, err)
	return c
}

func spec(query string, timeout time.Duration) *v1alpha1.CollectorSpec {
	return &v1alpha1.CollectorSpec{Name: "m", Prometheus: &v1alpha1.PrometheusCollector{
		Query: query, Timeout: metav1.Duration{Duration: timeout},
	}}
}

var loop = &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Name: "factory-qos", Namespace: "factory"}}

// collectAt runs the query once, at now.
func collectAt(c *promcollector.Collector, query string, now time.Time) collectors.Metric {
	return c.Collect(context.Background(), loop, spec(query, 0), now)
}

// tickNow is a tick's time as Prometheus keeps it: whole milliseconds.
func tickNow() time.Time { return time.Now().Truncate(time.Millisecond) }
