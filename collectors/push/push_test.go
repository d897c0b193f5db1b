//go:build integration

package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/collectors/push"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

var crds = filepath.Join("..", "..", "config", "crd", "bases")

type env struct {
	*cluster.APIServer
	c  client.Client
	ns string
}

var nsSeq atomic.Int64

// start runs a real kube-apiserver and etcd with the ControlLoop CRD, and makes a namespace
// with the Secrets and loops the tests push to:
//
//   - Secret telemetry-token (token A), ops-token (token B, written with a trailing newline),
//     shared-token (token A again), empty-token (no token key);
//   - loop factory-qos: push collectors jitter and load (telemetry-token), depth
//     (shared-token), queue (ops-token), orphan (a Secret that does not exist), and usage, a
//     resources collector;
//   - loop quiet: no push collector.
func start(t *testing.T) *env {
	t.Helper()
	s := cluster.StartAPIServer(t, crds)
	c, err := client.New(s.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	e := &env{APIServer: s, c: c, ns: fmt.Sprintf("p%d", nsSeq.Add(1))}
	ctx := context.Background()
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}))
	for name, token := range map[string]string{"telemetry-token": tokenA, "ops-token": tokenB + "\n", "shared-token": tokenA} {
		require.NoError(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
			Data: map[string][]byte{push.TokenKey: []byte(token)}}))
	}
	require.NoError(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "empty-token"},
		Data: map[string][]byte{"other": []byte(tokenA)}}))
	pushTo := func(name, secret string) v1alpha1.CollectorSpec {
		return v1alpha1.CollectorSpec{Name: name, Push: &v1alpha1.PushCollector{TokenSecret: secret}}
	}
	e.createLoop(t, "factory-qos",
		pushTo("jitter", "telemetry-token"), pushTo("load", "telemetry-token"), pushTo("depth", "shared-token"),
		pushTo("queue", "ops-token"), pushTo("orphan", "missing-token"), pushTo("blank", "empty-token"),
		v1alpha1.CollectorSpec{Name: "usage", Resources: &v1alpha1.ResourcesCollector{Target: "web", Resource: "cpu"}})
	e.createLoop(t, "quiet", v1alpha1.CollectorSpec{Name: "usage", Resources: &v1alpha1.ResourcesCollector{Target: "web", Resource: "cpu"}})
	return e
}

func (e *env) createLoop(t *testing.T, name string, cols ...v1alpha1.CollectorSpec) {
	t.Helper()
	loop := &v1alpha1.ControlLoop{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name},
		Spec: v1alpha1.ControlLoopSpec{
			Interval:   metav1.Duration{Duration: time.Second},
			Policy:     v1alpha1.PolicySpec{Bundle: "reactive", Decision: "governor/reactive/decision"},
			Collectors: cols,
			Targets:    []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"}}},
		},
	}
	require.NoError(t, e.c.Create(context.Background(), loop))
}

func (e *env) loop(t *testing.T, name string) *v1alpha1.ControlLoop {
	t.Helper()
	loop := &v1alpha1.ControlLoop{}
	require.NoError(t, e.c.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, loop))
	return loop
}

func (e *env) rv(t *testing.T, name string) string { return e.loop(t, name).ResourceVersion }

// answer is an HTTP response: status, headers, and the error reason of its JSON body.
type answer struct {
	code   int
	header http.Header
	reason string
	body   string
}

type request struct {
	method, path, token, auth, contentType, body string
	chunked                                      bool
}

func do(t *testing.T, base string, r request) answer {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(r.body)
	if r.chunked { // no Content-Length: the server must bound what it reads
		body = io.MultiReader(strings.NewReader(r.body))
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	require.NoError(t, err)
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.contentType != "-" {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
	if len(b) > 0 {
		var e struct {
			Error string `json:"error"`
		}
		require.NoError(t, json.Unmarshal(b, &e), "body %q", b)
		require.NotEmpty(t, e.Error, "body %q", b)
		require.NotContains(t, strings.TrimSpace(string(b)), "\n", "one line")
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		a.reason = e.Error
	}
	return a
}

// str is a quantity's canonical form (String has a pointer receiver).
func str(q resource.Quantity) string { return q.String() }

// TestPush pushes over real HTTP to a Server whose client talks to a real API server.
func TestPush(t *testing.T) {
	e := start(t)
	srv := httptest.NewServer(push.NewServer(e.c, push.Options{}).Handler())
	t.Cleanup(srv.Close)
	path := obsPath(e.ns, "factory-qos")

	t.Run("success writes status.observations; the Set reports them", func(t *testing.T) {
		before := time.Now()
		a := do(t, srv.URL, request{path: path, token: tokenA, body: `{"jitter": 2.4, "load": 0.7}`})
		after := time.Now()
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		assert.Empty(t, a.body)

		loop := e.loop(t, "factory-qos")
		require.Len(t, loop.Status.Observations, 2)
		jitter, load := loop.Status.Observations["jitter"], loop.Status.Observations["load"]
		assert.Equal(t, 0, jitter.Value.Cmp(resource.MustParse("2.4")), str(jitter.Value))
		assert.Equal(t, 0, load.Value.Cmp(resource.MustParse("0.7")), str(load.Value))
		// Both at the same time, "now" to the microsecond.
		assert.True(t, jitter.Time.Time.Equal(load.Time.Time))
		assert.False(t, jitter.Time.Time.Before(before.Truncate(time.Microsecond)), "%v before %v", jitter.Time, before)
		assert.False(t, jitter.Time.After(after), "%v after %v", jitter.Time, after)

		m := collectors.Set{}.Metrics(context.Background(), loop, after)
		require.NotNil(t, m["jitter"].Value)
		assert.InDelta(t, 2.4, *m["jitter"].Value, 1e-12)
		assert.InDelta(t, 0.7, *m["load"].Value, 1e-12)
		assert.Equal(t, jitter.Time.Time, m["jitter"].ObservedAt)
		assert.Equal(t, "nothing pushed yet", m["queue"].Err)
	})

	t.Run("a second push updates, with its own time, and leaves the others", func(t *testing.T) {
		at := time.Date(2026, 11, 21, 10, 0, 0, 250_123_000, time.UTC)
		a := do(t, srv.URL, request{path: path, token: tokenA, body: `{"jitter": 3.1, "time": "2026-11-21T11:00:00.250123+01:00"}`})
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		loop := e.loop(t, "factory-qos")
		assert.Equal(t, "3100m", str(loop.Status.Observations["jitter"].Value))
		assert.True(t, loop.Status.Observations["jitter"].Time.Time.Equal(at), "%v", loop.Status.Observations["jitter"].Time)
		assert.Equal(t, "700m", str(loop.Status.Observations["load"].Value), "untouched")
		m := collectors.Set{}.Metrics(context.Background(), loop, at.Add(time.Second))
		assert.InDelta(t, 3.1, *m["jitter"].Value, 1e-12)
		assert.Equal(t, at, m["jitter"].ObservedAt.UTC())
	})

	t.Run("values keep their precision", func(t *testing.T) {
		values := map[string]float64{"jitter": 2.4e-5, "load": 123456.789012345, "depth": -1e20}
		body, _ := json.Marshal(values)
		a := do(t, srv.URL, request{path: path, token: tokenA, body: string(body)})
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		m := collectors.Set{}.Metrics(context.Background(), e.loop(t, "factory-qos"), time.Now())
		for name, want := range values {
			got := *m[name].Value
			assert.LessOrEqual(t, math.Abs(got-want), 1e-15*math.Abs(want), "%s: %v, want %v", name, got, want)
		}
	})

	t.Run("collectors with different secrets: the token must match each", func(t *testing.T) {
		rv := e.rv(t, "factory-qos")
		for _, token := range []string{tokenA, tokenB} {
			a := do(t, srv.URL, request{path: path, token: token, body: `{"jitter": 1, "queue": 2}`})
			assert.Equal(t, http.StatusForbidden, a.code, a.body)
		}
		assert.Equal(t, rv, e.rv(t, "factory-qos"), "nothing written")
		// queue alone with its own token (its Secret holds it with a trailing newline).
		a := do(t, srv.URL, request{path: path, token: tokenB, body: `{"queue": 2}`})
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		// Two Secrets that hold the same token.
		a = do(t, srv.URL, request{path: path, token: tokenA, body: `{"jitter": 5, "depth": 6}`})
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		obs := e.loop(t, "factory-qos").Status.Observations
		assert.Equal(t, "2", str(obs["queue"].Value))
		assert.Equal(t, "5", str(obs["jitter"].Value))
		assert.Equal(t, "6", str(obs["depth"].Value))
	})

	future := time.Now().Add(2 * time.Minute).UTC().Format(time.RFC3339)
	bigBody := `{"jitter": 1` + strings.Repeat(" ", int(push.DefaultMaxBody)) + `}`
	for _, tc := range []struct {
		name   string
		req    request
		code   int
		reason string
		header map[string]string
	}{
		{"GET", request{method: http.MethodGet, path: path, token: tokenA}, 405, "method GET not allowed: POST observations", map[string]string{"Allow": "POST"}},
		{"PUT", request{method: http.MethodPut, path: path, token: tokenA, body: `{"jitter": 1}`}, 405, "method PUT not allowed", map[string]string{"Allow": "POST"}},
		{"no Authorization", request{path: path, body: `{"jitter": 1}`}, 401, "missing Authorization: Bearer token", map[string]string{"WWW-Authenticate": `Bearer realm="governor"`}},
		{"Basic auth", request{path: path, auth: "Basic dXNlcjpwYXNz", body: `{"jitter": 1}`}, 401, "malformed Authorization header", map[string]string{"WWW-Authenticate": `Bearer realm="governor"`}},
		{"Bearer without a token", request{path: path, auth: "Bearer ", body: `{"jitter": 1}`}, 401, "malformed Authorization header", nil},
		{"wrong token", request{path: path, token: "guess", body: `{"jitter": 1}`}, 403, "the token does not match", nil},
		{"token of another collector", request{path: path, token: tokenB, body: `{"jitter": 1}`}, 403, "the token is not that of push collector jitter", nil},
		{"Secret missing", request{path: path, token: tokenA, body: `{"orphan": 1}`}, 403, "the token is not that of push collector orphan", nil},
		{"Secret without a token key", request{path: path, token: tokenA, body: `{"blank": 1}`}, 403, "the token is not that of push collector blank", nil},
		{"text/plain", request{path: path, token: tokenA, contentType: "text/plain", body: `{"jitter": 1}`}, 415, `Content-Type "text/plain": want application/json`, nil},
		{"form", request{path: path, token: tokenA, contentType: "application/x-www-form-urlencoded", body: `jitter=1`}, 415, "want application/json", nil},
		{"no Content-Type", request{path: path, token: tokenA, contentType: "-", body: `{"jitter": 1}`}, 415, "missing Content-Type: want application/json", nil},
		{"not JSON", request{path: path, token: tokenA, body: `{"jitter": 1,`}, 400, "not JSON: ", nil},
		{"empty body", request{path: path, token: tokenA, body: ``}, 400, "not JSON: the body is empty", nil},
		{"an array", request{path: path, token: tokenA, body: `[1, 2]`}, 400, "not an object: want a JSON object of named numbers, got an array", nil},
		{"a number", request{path: path, token: tokenA, body: `2.4`}, 400, "not an object: want a JSON object of named numbers, got a number", nil},
		{"a string value", request{path: path, token: tokenA, body: `{"jitter": "2.4"}`}, 400, "jitter: a string, not a number", nil},
		{"a null value", request{path: path, token: tokenA, body: `{"jitter": null}`}, 400, "jitter: null, not a number", nil},
		{"a boolean value", request{path: path, token: tokenA, body: `{"jitter": true}`}, 400, "jitter: a boolean, not a number", nil},
		{"an object value", request{path: path, token: tokenA, body: `{"jitter": {"v": 1}}`}, 400, "jitter: an object, not a number", nil},
		{"infinite", request{path: path, token: tokenA, body: `{"jitter": 1e999}`}, 400, "jitter: 1e999 is not a finite number", nil},
		{"a name twice", request{path: path, token: tokenA, body: `{"jitter": 1, "jitter": 2}`}, 400, `"jitter" appears twice`, nil},
		{"no values", request{path: path, token: tokenA, body: `{}`}, 400, "no observations: the object names no values", nil},
		{"only a time", request{path: path, token: tokenA, body: `{"time": "2026-01-01T00:00:00Z"}`}, 400, "no observations", nil},
		{"two objects", request{path: path, token: tokenA, body: `{"jitter": 1} {"load": 2}`}, 400, "not JSON: ", nil},
		{"unknown names", request{path: path, token: tokenA, body: `{"jitter": 1, "bogus": 2, "usage": 3}`}, 400,
			"bogus, usage: not a push collector of controlloop " + e.ns + "/factory-qos (its push collectors: blank, depth, jitter, load, orphan, queue)", nil},
		{"only unknown names, a token of the loop", request{path: path, token: tokenB, body: `{"bogus": 2}`}, 400, "bogus: not a push collector", nil},
		{"only unknown names, no token of the loop: nothing disclosed", request{path: path, token: "guess", body: `{"bogus": 2}`}, 403, "the token does not match", nil},
		{"bad time", request{path: path, token: tokenA, body: `{"jitter": 1, "time": "yesterday"}`}, 400, `time "yesterday": not RFC 3339`, nil},
		{"time without a zone", request{path: path, token: tokenA, body: `{"jitter": 1, "time": "2026-01-01T00:00:00"}`}, 400, "not RFC 3339", nil},
		{"time as a number", request{path: path, token: tokenA, body: `{"jitter": 1, "time": 1700000000}`}, 400, "time: not a push collector", nil},
		{"time in the future", request{path: path, token: tokenA, body: `{"jitter": 1, "time": "` + future + `"}`}, 400, "is more than 1m0s ahead of the server's clock", nil},
		// The same answer as a wrong token's: nobody learns which loops exist.
		{"loop not found", request{path: obsPath(e.ns, "nope"), token: tokenA, body: `{"jitter": 1}`}, 403, "the token does not match", nil},
		{"namespace not found", request{path: obsPath("nowhere", "factory-qos"), token: tokenA, body: `{"jitter": 1}`}, 403, "the token does not match", nil},
		{"invalid name", request{path: obsPath(e.ns, "Not_A_Name"), token: tokenA, body: `{"jitter": 1}`}, 403, "the token does not match", nil},
		{"loop without push collectors", request{path: obsPath(e.ns, "quiet"), token: tokenA, body: `{"usage": 1}`}, 403, "the token does not match", nil},
		{"body over the limit", request{path: path, token: tokenA, body: bigBody}, 413, "body larger than 65536 bytes", nil},
		{"body over the limit, chunked", request{path: path, token: tokenA, body: bigBody, chunked: true}, 413, "body larger than 65536 bytes", nil},
		{"another path", request{path: "/v1/loops/" + e.ns + "/factory-qos", token: tokenA, body: `{"jitter": 1}`}, 404, "no such endpoint", nil},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.code, tc.name), func(t *testing.T) {
			rv := e.rv(t, "factory-qos")
			a := do(t, srv.URL, tc.req)
			assert.Equal(t, tc.code, a.code, a.body)
			assert.Contains(t, a.reason, tc.reason)
			for k, v := range tc.header {
				assert.Equal(t, v, a.header.Get(k), k)
			}
			assert.Equal(t, rv, e.rv(t, "factory-qos"), "nothing written")
		})
	}

	t.Run("a body just under the limit is accepted", func(t *testing.T) {
		small := httptest.NewServer(push.NewServer(e.c, push.Options{MaxBody: 64}).Handler())
		defer small.Close()
		body := `{"jitter": 7}`
		body += strings.Repeat(" ", 64-len(body))
		a := do(t, small.URL, request{path: path, token: tokenA, body: body})
		assert.Equal(t, http.StatusNoContent, a.code, a.body)
		a = do(t, small.URL, request{path: path, token: tokenA, body: body + " "})
		assert.Equal(t, http.StatusRequestEntityTooLarge, a.code, a.body)
		assert.Equal(t, "body larger than 64 bytes", a.reason)
	})

	t.Run("a time up to a minute ahead is accepted", func(t *testing.T) {
		at := time.Now().Add(30 * time.Second).UTC().Truncate(time.Microsecond)
		a := do(t, srv.URL, request{path: path, token: tokenA, body: `{"load": 1.5, "time": "` + at.Format(time.RFC3339Nano) + `"}`})
		require.Equal(t, http.StatusNoContent, a.code, a.body)
		assert.True(t, e.loop(t, "factory-qos").Status.Observations["load"].Time.Time.Equal(at))
	})

	t.Run("concurrent pushes of different names all land", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 10 {
			for _, name := range []string{"jitter", "load", "depth"} {
				wg.Go(func() {
					a := do(t, srv.URL, request{path: path, token: tokenA, body: fmt.Sprintf(`{%q: %d}`, name, 100+i)})
					assert.Equal(t, http.StatusNoContent, a.code, a.body)
				})
			}
			wg.Go(func() {
				a := do(t, srv.URL, request{path: path, token: tokenB, body: fmt.Sprintf(`{"queue": %d}`, 100+i)})
				assert.Equal(t, http.StatusNoContent, a.code, a.body)
			})
		}
		wg.Wait()
		obs := e.loop(t, "factory-qos").Status.Observations
		for _, name := range []string{"jitter", "load", "depth", "queue"} {
			q := obs[name].Value
			v := q.Value()
			assert.True(t, v >= 100 && v < 110, "%s = %d: one of this round's", name, v)
		}
	})

	t.Run("503 when the API server cannot be reached", func(t *testing.T) {
		cfg := rest.CopyConfig(e.Config)
		cfg.Host = "https://127.0.0.1:1" // nothing listens there
		dead, err := client.New(cfg, client.Options{Scheme: controller.Scheme()})
		require.NoError(t, err)
		s := httptest.NewServer(push.NewServer(dead, push.Options{}).Handler())
		defer s.Close()
		a := do(t, s.URL, request{path: path, token: tokenA, body: `{"jitter": 1}`})
		assert.Equal(t, http.StatusServiceUnavailable, a.code, a.body)
		assert.Equal(t, "the Kubernetes API server is unreachable (reading the loop): try again later", a.reason)
	})

	t.Run("500 when the API server refuses (the controller may not patch the status)", func(t *testing.T) {
		// A user who may read loops and Secrets but not write the status.
		cfg := cluster.RBACUser(t, e.APIServer, e.c, "push-readonly", []rbacv1.PolicyRule{
			{APIGroups: []string{"governor.dev"}, Resources: []string{"controlloops"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
		})
		ro, err := client.New(cfg, client.Options{Scheme: controller.Scheme()})
		require.NoError(t, err)
		s := httptest.NewServer(push.NewServer(ro, push.Options{}).Handler())
		defer s.Close()
		rv := e.rv(t, "factory-qos")
		require.Eventually(t, func() bool { // the binding reaches the authorizer within moments
			return ro.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: "factory-qos"}, &v1alpha1.ControlLoop{}) == nil
		}, 20*time.Second, 50*time.Millisecond)
		a := do(t, s.URL, request{path: path, token: tokenA, body: `{"jitter": 1}`})
		assert.Equal(t, http.StatusInternalServerError, a.code, a.body)
		assert.Equal(t, "the Kubernetes API server refused the controller (writing the observations): Forbidden", a.reason)
		assert.Equal(t, rv, e.rv(t, "factory-qos"), "nothing written")
	})
}

// TestRestartKeepsObservations runs the Server as a manager's Runnable (with a client like the
// controller's), pushes, stops the manager and starts another: the observations are in the
// API, and the new one goes on updating them.
func TestRestartKeepsObservations(t *testing.T) {
	e := start(t)
	path := obsPath(e.ns, "factory-qos")
	first, stop := runManager(t, e.Config)
	a := do(t, "http://"+first.Addr(), request{path: path, token: tokenA, body: `{"jitter": 4.2, "time": "2026-11-21T10:00:00.5Z"}`})
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	stop()
	_, err := http.Get("http://" + first.Addr() + path)
	require.Error(t, err, "the first server has stopped listening")

	loop := e.loop(t, "factory-qos")
	assert.Equal(t, "4200m", str(loop.Status.Observations["jitter"].Value))
	at := time.Date(2026, 11, 21, 10, 0, 0, 500_000_000, time.UTC)
	assert.True(t, loop.Status.Observations["jitter"].Time.Time.Equal(at))

	second, _ := runManager(t, e.Config)
	m := collectors.Set{}.Metrics(context.Background(), e.loop(t, "factory-qos"), at.Add(time.Second))
	assert.InDelta(t, 4.2, *m["jitter"].Value, 1e-12)
	assert.Equal(t, at, m["jitter"].ObservedAt.UTC())

	a = do(t, "http://"+second.Addr(), request{path: path, token: tokenA, body: `{"jitter": 4.3, "load": 1}`})
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	obs := e.loop(t, "factory-qos").Status.Observations
	assert.Equal(t, "4300m", str(obs["jitter"].Value))
	assert.Equal(t, "1", str(obs["load"].Value))
}

// runManager runs a Server as a Runnable of a controller-runtime manager configured as the
// controller's (its client reads from a cache, Secrets excepted), for cfg's user, on a free
// loopback port. stop stops the manager and waits for it.
func runManager(t *testing.T, cfg *rest.Config) (s *push.Server, stop func()) {
	t.Helper()
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:  controller.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Client:  client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	require.NoError(t, err)
	s = push.NewServer(mgr.GetClient(), push.Options{Addr: "127.0.0.1:0"})
	assert.False(t, s.NeedLeaderElection())
	require.NoError(t, mgr.Add(s))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	require.Eventually(t, func() bool { return s.Addr() != "" }, 30*time.Second, 10*time.Millisecond)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("the manager did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// TestRBACMarkersSuffice pushes as a user with exactly the permissions of this package's
// +kubebuilder:rbac markers, through a manager whose client is configured as the controller's
// (loops from a cache, Secrets read one by one): enough, and no more than reading Secrets one
// by one (no list, no writes to them, no writes to the loop's spec).
func TestRBACMarkersSuffice(t *testing.T) {
	e := start(t)
	cfg := cluster.RBACUser(t, e.APIServer, e.c, "governor-push", cluster.MarkerRules(t, "."))
	uc, err := client.New(cfg, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { // the binding reaches the authorizer within moments
		return uc.List(context.Background(), &v1alpha1.ControlLoopList{}, client.InNamespace(e.ns)) == nil
	}, 20*time.Second, 50*time.Millisecond)
	s, _ := runManager(t, cfg)
	var a answer
	require.Eventually(t, func() bool {
		a = do(t, "http://"+s.Addr(), request{path: obsPath(e.ns, "factory-qos"), token: tokenA, body: `{"jitter": 1}`})
		return a.code == http.StatusNoContent
	}, 20*time.Second, 100*time.Millisecond, "last answer: %d %s", a.code, a.body)
	a = do(t, "http://"+s.Addr(), request{path: obsPath(e.ns, "factory-qos"), token: "guess", body: `{"jitter": 1}`})
	assert.Equal(t, http.StatusForbidden, a.code, a.body)
	assert.Equal(t, "1", str(e.loop(t, "factory-qos").Status.Observations["jitter"].Value))

	ctx := context.Background()
	secret := &corev1.Secret{}
	require.NoError(t, uc.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "telemetry-token"}, secret))
	secret.Data["token"] = []byte("mine")
	assert.True(t, apierrors.IsForbidden(uc.Update(ctx, secret)), "update a Secret")
	assert.True(t, apierrors.IsForbidden(uc.List(ctx, &corev1.SecretList{}, client.InNamespace(e.ns))), "list Secrets")
	loop := e.loop(t, "factory-qos")
	loop.Spec.State = v1alpha1.Paused
	assert.True(t, apierrors.IsForbidden(uc.Update(ctx, loop)), "update a loop's spec")
}
