package push_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors/push"
	"governor.dev/governor/controller"
)

// Tokens of the tests' Secrets (both tiers).
const (
	tokenA = "tok-A-0123456789"
	tokenB = "tok-B-9876543210"
)

func obsPath(ns, name string) string { return "/v1/loops/" + ns + "/" + name + "/observations" }

// fakeAPI is a fake client holding loop factory (push collectors load, with token A, and
// queue, with token B) and loop quiet (no push collector) in namespace ns, and counting the
// Secrets it is asked for.
func fakeAPI(t *testing.T) (client.Client, *atomic.Int64) {
	t.Helper()
	secret := func(name, token string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: map[string][]byte{push.TokenKey: []byte(token)}}
	}
	loop := func(name string, cols ...v1alpha1.CollectorSpec) *v1alpha1.ControlLoop {
		return &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1alpha1.ControlLoopSpec{Collectors: cols}}
	}
	pushTo := func(name, secret string) v1alpha1.CollectorSpec {
		return v1alpha1.CollectorSpec{Name: name, Push: &v1alpha1.PushCollector{TokenSecret: secret}}
	}
	var secretReads atomic.Int64
	c := fake.NewClientBuilder().WithScheme(controller.Scheme()).
		WithObjects(secret("a", tokenA), secret("b", tokenB),
			loop("factory", pushTo("load", "a"), pushTo("queue", "b")),
			loop("quiet", v1alpha1.CollectorSpec{Name: "usage", Resources: &v1alpha1.ResourcesCollector{Target: "web", Resource: "cpu"}})).
		WithStatusSubresource(&v1alpha1.ControlLoop{}).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				secretReads.Add(1)
			}
			return c.Get(ctx, key, obj, opts...)
		}}).Build()
	return c, &secretReads
}

// post sends a push to h and returns the status, the body and the Retry-After header.
func post(h http.Handler, remote, path, token, body string) (int, string, string) {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.RemoteAddr = remote
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String(), w.Header().Get("Retry-After")
}

// An unauthenticated caller gets one answer, word for word, for a wrong token, a loop that
// does not exist and a loop without push collectors: it cannot tell which loops exist. Its
// requests read no Secret once the loop's are known. An authenticated caller gets precise
// answers.
func TestUnauthenticatedCallersLearnNothing(t *testing.T) {
	c, secretReads := fakeAPI(t)
	h := push.NewServer(c, push.Options{}).Handler()
	const remote = "192.0.2.1:1000"
	code, body, _ := post(h, remote, obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	require.Equal(t, http.StatusNoContent, code, body)

	denied := []struct{ name, path, body string }{
		{"wrong token", obsPath("ns", "factory"), `{"load": 1}`},
		{"wrong token, unknown names", obsPath("ns", "factory"), `{"bogus": 1}`},
		{"no such loop", obsPath("ns", "nope"), `{"load": 1}`},
		{"no such namespace", obsPath("elsewhere", "factory"), `{"load": 1}`},
		{"an invalid name", obsPath("ns", "Not_A_Name"), `{"load": 1}`},
		{"a loop without push collectors", obsPath("ns", "quiet"), `{"usage": 1}`},
	}
	var first string
	for i, d := range denied {
		code, body, _ := post(h, remote, d.path, "guess", d.body)
		assert.Equal(t, http.StatusForbidden, code, d.name)
		if i == 0 {
			first = body
			assert.Contains(t, body, "the token does not match")
		}
		assert.Equal(t, first, body, d.name)
	}
	// Even a valid token of another loop's collector is no key to these.
	code, body, _ = post(h, remote, obsPath("ns", "quiet"), tokenA, `{"usage": 1}`)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, first, body)

	before := secretReads.Load()
	for i := range 1000 {
		post(h, remote, obsPath("ns", "factory"), fmt.Sprintf("guess-%d", i), `{"load": 1, "queue": 2}`)
	}
	assert.Equal(t, before, secretReads.Load(), "bad tokens read no Secret")

	for _, p := range []struct {
		name, token, body string
		code              int
		reason            string
	}{
		{"unknown names", tokenA, `{"load": 1, "bogus": 2}`, 400, "bogus: not a push collector of controlloop ns/factory (its push collectors: load, queue)"},
		{"only unknown names", tokenB, `{"bogus": 2}`, 400, "bogus: not a push collector"},
		{"a collector of another token", tokenA, `{"load": 1, "queue": 2}`, 403, "the token is not that of push collector queue: each collector named must hold it in its Secret"},
	} {
		code, body, _ := post(h, remote, obsPath("ns", "factory"), p.token, p.body)
		assert.Equal(t, p.code, code, p.name)
		assert.Contains(t, body, p.reason, p.name)
	}
}

// Over the per-client rate, every request of that client is answered 429 with Retry-After;
// other clients are not affected.
func TestClientRateLimit(t *testing.T) {
	c, _ := fakeAPI(t)
	h := push.NewServer(c, push.Options{Limits: push.Limits{ClientRate: 1}}).Handler() // bursts of 2
	for range 2 {
		code, body, _ := post(h, "192.0.2.1:1000", obsPath("ns", "factory"), "guess", `{"load": 1}`)
		assert.Equal(t, http.StatusForbidden, code, body)
	}
	code, body, retry := post(h, "192.0.2.1:1001", obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	assert.Equal(t, http.StatusTooManyRequests, code)
	assert.Equal(t, "1", retry)
	assert.Contains(t, body, "too many requests from this client address: at most 1 a second: retry after 1s")
	code, body, _ = post(h, "192.0.2.2:1000", obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	assert.Equal(t, http.StatusNoContent, code, body)
}

// The per-loop rate counts authenticated pushes only: a flood of bad tokens does not use it up.
func TestLoopRateLimit(t *testing.T) {
	c, _ := fakeAPI(t)
	h := push.NewServer(c, push.Options{Limits: push.Limits{LoopRate: 0.5}}).Handler() // bursts of 1, one every 2 s
	for range 100 {
		code, _, _ := post(h, "192.0.2.1:1000", obsPath("ns", "factory"), "guess", `{"load": 1}`)
		assert.Equal(t, http.StatusForbidden, code)
	}
	code, body, _ := post(h, "192.0.2.2:1000", obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	assert.Equal(t, http.StatusNoContent, code, body)
	code, body, retry := post(h, "192.0.2.3:1000", obsPath("ns", "factory"), tokenB, `{"queue": 1}`)
	assert.Equal(t, http.StatusTooManyRequests, code)
	assert.Equal(t, "2", retry)
	assert.Contains(t, body, "too many pushes to controlloop ns/factory: at most 0.5 a second: retry after 2s")
}
