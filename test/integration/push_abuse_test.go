//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors/push"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/deployed"
	"governor.dev/governor/test/testkeys"
)

// apiRequests counts the requests a client config sends, by verb and resource.
type apiRequests struct {
	mu     sync.Mutex
	counts map[string]int
}

func (a *apiRequests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		a.mu.Lock()
		key := r.Method + " " + resourceOf(r.URL.Path)
		if r.URL.Query().Get("watch") == "true" {
			key += " (watch)"
		}
		a.counts[key]++
		a.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (a *apiRequests) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.counts))
	for k, v := range a.counts {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// resourceOf is the resource an API path names (its subresource too): the segment after
// "namespaces/NS" or after the group and version.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			if len(rest) >= 3 {
				return rest[0] + "/" + rest[2]
			}
			return rest[0]
		}
	}
	if len(parts) > 0 {
		return parts[len(parts)-1]
	}
	return path
}

// Flooding the push endpoint with bad tokens, from many client addresses so that the
// per-client limit lets them through to the token check, costs the API server nothing: no
// Secret is read, and the answers are all the same 403, for the loop and for loops that do not
// exist. Good pushes meanwhile land; their latency, with and without the flood, is logged.
func TestPushFloodCostsTheAPIServerNothing(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t)
	const token = "agent-token-0123456789"
	require.NoError(t, e.c.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"},
		Data: map[string][]byte{push.TokenKey: []byte(token)}}))
	e.loop(t, ns, "flooded", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval:   metav1.Duration{Duration: time.Minute},
		Policy:     v1alpha1.PolicySpec{Bundle: "newness", Decision: "test/newness/decision"},
		Collectors: []v1alpha1.CollectorSpec{{Name: "load", Push: &v1alpha1.PushCollector{TokenSecret: "agent"}}},
		Safety:     v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: time.Minute}},
	})

	// The controller as shipped: HTTPS, the default limits, its API requests counted.
	dir := t.TempDir()
	ca := testkeys.NewCA(t, "push-ca")
	cert := ca.Server(t, "push")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, cert.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, cert.KeyPEM, 0o600))
	counted := &apiRequests{counts: map[string]int{}}
	cfg := rest.CopyConfig(e.api.Config)
	cfg.Wrap(counted.wrap)
	addr := deployed.FreeAddr(t)
	startManagerOn(t, cfg, controller.Options{
		Bundles: e.bundles, MetricsAddr: "0", ProbeAddr: "0",
		PushAddr: addr, PushTLS: controller.TLSFiles{Cert: certFile, Key: keyFile},
		PushLimits: push.Limits{LoopRate: push.DefaultLoopRate, ClientRate: push.DefaultClientRate},
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.X509)
	// from is an HTTPS client whose connections come from a loopback address of its own.
	from := func(ip string) *http.Client {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: dialer.DialContext, TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16,
		}}
	}
	post := func(c *http.Client, loop, token, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/loops/"+ns+"/"+loop+"/observations", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	agent := from("127.0.0.1")
	eventually(t, 30*time.Second, func() (bool, string) {
		code, body := post(agent, "flooded", token, `{"load": 1}`)
		return code == http.StatusNoContent, fmt.Sprintf("the first push: %d %s", code, body)
	})

	// goodPushes pushes every 50ms until stop is closed, and returns the latencies of pushes
	// that landed; value is the last value pushed.
	var value atomic.Int64
	goodPushes := func(stop <-chan struct{}) []time.Duration {
		var latencies []time.Duration
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return latencies
			case <-tick.C:
			}
			v := value.Add(1)
			start := time.Now()
			code, body := post(agent, "flooded", token, fmt.Sprintf(`{"load": %d}`, v))
			if !assert.Equal(t, http.StatusNoContent, code, body) {
				continue
			}
			latencies = append(latencies, time.Since(start))
		}
	}
	quiet := make(chan struct{})
	time.AfterFunc(2*time.Second, func() { close(quiet) })
	baseline := goodPushes(quiet)

	// The flood: 40 addresses, 4 connections each, every one paced at 10 requests a second
	// (1,600 a second in all, 40 a second per address: under the per-client limit).
	const addrs, conns, perConn, requests = 40, 4, 10.0, 40
	denials := []struct{ loop, body string }{
		{"flooded", `{"load": 666}`}, {"flooded", `{"bogus": 1, "load": 2}`}, {"nope", `{"load": 1}`}, {"flooded-too", `{"load": 1}`},
	}
	before := counted.snapshot()
	stop := make(chan struct{})
	during := make(chan []time.Duration, 1)
	go func() { during <- goodPushes(stop) }()
	var answers sync.Map // "code body" -> count
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for a := range addrs {
		c := from(fmt.Sprintf("127.0.1.%d", a+1))
		for k := range conns {
			wg.Go(func() {
				tick := time.NewTicker(time.Duration(float64(time.Second) / perConn))
				defer tick.Stop()
				for i := range requests {
					<-tick.C
					d := denials[(a+k+i)%len(denials)]
					code, body := post(c, d.loop, fmt.Sprintf("guess-%d-%d-%d", a, k, i), d.body)
					n, _ := answers.LoadOrStore(fmt.Sprintf("%d %s", code, strings.TrimSpace(body)), new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					sent.Add(1)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	flooded := <-during
	after := counted.snapshot()

	// Every bad request got the same 403.
	var kinds []string
	answers.Range(func(k, v any) bool {
		kinds = append(kinds, fmt.Sprintf("%s (x%d)", k, v.(*atomic.Int64).Load()))
		return true
	})
	require.Len(t, kinds, 1, "one answer to every bad request: %v", kinds)
	assert.True(t, strings.HasPrefix(kinds[0], "403 "), kinds[0])

	// The API server saw no Secret read (loops are read from the cache): only what the good
	// pushes and the loop's ticks write.
	delta := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			delta[k] = d
		}
	}
	for k, v := range delta {
		assert.NotContains(t, k, "secrets", "%d requests %s during the flood", v, k)
	}

	// The good pushes landed: the last value is in the status.
	require.NotEmpty(t, flooded, "no good push landed during the flood")
	obs := e.get(t, ns, "flooded").Status.Observations["load"]
	assert.Equal(t, value.Load(), obs.Value.Value(), "the last good push is in the status")

	t.Logf("flood: %d bad requests from %d addresses in %s (%.0f/s), every one %s", sent.Load(), addrs, elapsed.Round(time.Millisecond),
		float64(sent.Load())/elapsed.Seconds(), kinds[0])
	t.Logf("API requests by the controller during the flood: %v", delta)
	t.Logf("good pushes: without the flood %s; during it %s", latencySummary(baseline), latencySummary(flooded))
}

// latencySummary is the count, median, 99th percentile and maximum of latencies.
func latencySummary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d median %s p99 %s max %s", len(s), at(0.5), at(0.99), s[len(s)-1].Round(10*time.Microsecond))
}

// startManagerOn runs a controller manager on cfg until the test ends.
func startManagerOn(t *testing.T, cfg *rest.Config, opts controller.Options) {
	t.Helper()
	mgr, err := controller.NewManager(cfg, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}
