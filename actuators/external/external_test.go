package external

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/external/signature"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// system is a managed system over HTTPS: it verifies each request's signature, answers
// with the status its test gives (after a delay, if any), applies a POST's settings once
// per idempotency key and answers a GET with its settings.
type system struct {
	*httptest.Server
	mu       sync.Mutex
	status   []int         // the answer to each POST in turn; 200 once they run out
	delay    time.Duration // before answering a POST
	settings map[string]json.Number
	posts    []*http.Request
	bodies   []Change
	applied  map[string]bool // idempotency keys
	noGET    bool
}

func newSystem(t *testing.T) *system {
	s := &system{settings: map[string]json.Number{}, applied: map[string]bool{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// postCount is the number of POSTs received so far.
func (s *system) postCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.posts)
}

func (s *system) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := signature.Verify(r.Header, testKey, body, time.Now(), time.Minute); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodGet {
		if s.noGET {
			http.Error(w, "no", http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(s.settings)
		return
	}
	var c Change
	if err := json.Unmarshal(body, &c); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.posts = append(s.posts, r)
	s.bodies = append(s.bodies, c)
	status := http.StatusOK
	if len(s.status) > 0 {
		status, s.status = s.status[0], s.status[1:]
	}
	if s.delay > 0 {
		s.mu.Unlock()
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
		}
		s.mu.Lock()
	}
	if status/100 == 2 && !s.applied[r.Header.Get(IdempotencyKeyHeader)] {
		s.applied[r.Header.Get(IdempotencyKeyHeader)] = true
		for name, q := range c.Settings {
			s.settings[name] = number(q)
		}
	}
	if r.Context().Err() != nil {
		// The client gave up (it may have acted all the same): no answer, as from a system
		// whose answer never came. One written now may still reach the client and win its
		// transport's race with the client's own cancel (3 of 40 runs under -race and load).
		panic(http.ErrAbortHandler)
	}
	w.WriteHeader(status)
}

func (s *system) caBundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

func secretClient(key []byte) client.Client {
	return fake.NewClientBuilder().WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "egress-key"},
		Data: map[string][]byte{KeyName: key}}).Build()
}

func target(url string, ca []byte) *actuators.Target {
	spec := &v1alpha1.TargetSpec{Name: "egress", Ref: v1alpha1.TargetRef{Kind: v1alpha1.TargetExternal, Name: "lupus"},
		External: &v1alpha1.ExternalTarget{URL: url, SigningSecret: "egress-key", CABundle: ca,
			Timeout: &metav1.Duration{Duration: 10 * time.Second}, Retries: ptr.To[int32](2),
			Settings: []v1alpha1.ExternalSetting{
				{Name: "rate", QuantityRange: v1alpha1.QuantityRange{Min: resource.MustParse("10"), Max: resource.MustParse("100"), MaxStep: ptr.To(resource.MustParse("20"))}},
				{Name: "ratio", QuantityRange: v1alpha1.QuantityRange{Min: resource.MustParse("0"), Max: resource.MustParse("1")}},
			}}}
	return &actuators.Target{Name: "egress", Spec: spec, Exists: true, Current: map[string]any{}, Workload: workload.Of("lab", spec.Ref)}
}

func tickCtx() context.Context {
	return actuators.WithTick(context.Background(), actuators.Tick{Loop: types.NamespacedName{Namespace: "lab", Name: "lupus"}, UID: "u-1", Number: 7,
		Intent: time.UnixMicro(1796205600123456)})
}

// same compares settings by value, as numbers.
func same(t *testing.T, want Settings, got any, msg string) {
	t.Helper()
	g, ok := got.(Settings)
	require.True(t, ok, "%s: %T", msg, got)
	assert.Equal(t, want.numbers(), g.numbers(), msg)
}

func settings(kv ...string) Settings {
	out := Settings{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = resource.MustParse(kv[i+1])
	}
	return out
}

func TestParse(t *testing.T) {
	parse := func(doc string) (any, []decision.Problem) {
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var raw any
		require.NoError(t, dec.Decode(&raw))
		var p decision.Parser
		v := New().Parse(&p, "actions[0].set.external", raw)
		return v, p.Problems()
	}
	v, problems := parse(`{"rate": 40, "ratio": 0.25, "big": 1e18}`)
	require.Empty(t, problems)
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"rate": 40, "ratio": 0.25, "big": 1000000000000000000}`, string(raw), "numbers, exactly")

	for doc, want := range map[string]string{
		`40`:              `actions[0].set.external: must be an object of settings, such as {"rate": 40}, got number 40`,
		`{}`:              `actions[0].set.external: must set at least one setting`,
		`{"rate": "40"}`:  `actions[0].set.external.rate: must be a number, got string "40"`,
		`{"rate": -1}`:    `actions[0].set.external.rate: must not be negative, got -1`,
		`{"rate": 1e400}`: `actions[0].set.external.rate: 1e400 is out of range: a decimal exponent has at most 2 digits`,
		`{"rate": 1e19}`:  `actions[0].set.external.rate: 1e19 is out of range: beyond ±(2^63-1)`,
		`{"a b": 1}`:      `actions[0].set.external.a b: is not a setting's name (a letter or _, then letters, digits, _ . or -, at most 63)`,
		`{"rate": null}`:  `actions[0].set.external.rate: must be a number, got null`,
	} {
		v, problems := parse(doc)
		require.Len(t, problems, 1, doc)
		assert.Equal(t, want, problems[0].String(), doc)
		if doc == "40" {
			assert.Nil(t, v)
		}
	}
}

func TestFit(t *testing.T) {
	fit := func(cur Settings, want Settings, mode v1alpha1.OutOfBounds) (Settings, actuators.Fit) {
		tg := target("https://x", nil)
		tg.Current[Field] = cur
		f := actuators.Fit{OutOfBounds: mode}
		got, _ := New().Fit(&f, tg, want).(Settings)
		return got, f
	}
	got, f := fit(settings("rate", "40"), settings("rate", "90", "ratio", "1.5"), "")
	assert.Empty(t, f.Refusal)
	assert.True(t, f.Changes)
	same(t, settings("rate", "60", "ratio", "1"), got, "rate: one step of 20 from 40; ratio clamped to the maximum (its current unknown: no step)")
	assert.Equal(t, []string{"external rate 90 limited to one step (20) above 40", "external ratio 1500m lowered to the maximum 1"}, f.Clamps)

	_, f = fit(settings("rate", "40"), settings("rate", "40"), "")
	assert.False(t, f.Changes, "already so")

	got, f = fit(settings("rate", "500"), settings("rate", "50"), v1alpha1.Snap)
	same(t, settings("rate", "100"), got, "outside the bounds, Snap: the nearest bound")
	assert.Empty(t, f.Refusal)

	_, f = fit(Settings{}, settings("burst", "3"), "")
	assert.Equal(t, "external: the target declares no setting burst (it declares rate, ratio)", f.Refusal)

	f = actuators.Fit{}
	New().Fit(&f, &actuators.Target{Spec: &v1alpha1.TargetSpec{Name: "web"}, Current: map[string]any{}}, settings("rate", "1"))
	assert.Equal(t, "external: the target declares no external settings", f.Refusal)
}

func TestApplySignsAndNamesTheChange(t *testing.T) {
	sys := newSystem(t)
	tg := target(sys.URL+"/settings", sys.caBundle())
	changed, err := New().Apply(tickCtx(), secretClient(testKey), tg, settings("rate", "60", "ratio", "500m"))
	require.NoError(t, err)
	assert.True(t, changed)
	require.Len(t, sys.posts, 1)
	assert.Equal(t, "u-1/7/1796205600123456/egress", sys.posts[0].Header.Get(IdempotencyKeyHeader))
	assert.Equal(t, "application/json", sys.posts[0].Header.Get("Content-Type"))
	assert.Equal(t, "/settings", sys.posts[0].URL.Path)
	same(t, settings("rate", "60", "ratio", "500m"), sys.bodies[0].Settings, "the settings")
	sys.bodies[0].Settings = nil
	assert.Equal(t, Change{Loop: "lab/lupus", Target: "egress", Tick: 7, IdempotencyKey: "u-1/7/1796205600123456/egress"}, sys.bodies[0])
	assert.Equal(t, map[string]json.Number{"rate": "60", "ratio": "0.5"}, sys.settings)
}

// A 5xx is tried again with the same idempotency key and a new signature; so is a 429.
func TestApplyRetries(t *testing.T) {
	sys := newSystem(t)
	sys.status = []int{http.StatusInternalServerError, http.StatusTooManyRequests}
	tg := target(sys.URL, sys.caBundle())
	start := time.Now()
	changed, err := New().Apply(tickCtx(), secretClient(testKey), tg, settings("rate", "60"))
	require.NoError(t, err)
	assert.True(t, changed)
	require.Len(t, sys.posts, 3)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "waited 0.1 s, then 0.2 s")
	for _, r := range sys.posts[1:] {
		assert.Equal(t, sys.posts[0].Header.Get(IdempotencyKeyHeader), r.Header.Get(IdempotencyKeyHeader))
		assert.NotEqual(t, sys.posts[0].Header.Get(signature.SignatureHeader), r.Header.Get(signature.SignatureHeader))
	}
}

func TestApplyFailures(t *testing.T) {
	t.Run("500 every time: not applied, after 1 + retries tries", func(t *testing.T) {
		sys := newSystem(t)
		sys.status = []int{500, 500, 500}
		changed, err := New().Apply(tickCtx(), secretClient(testKey), target(sys.URL, sys.caBundle()), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "POST "+sys.URL+": 500 Internal Server Error (3 tries)")
		assert.Len(t, sys.posts, 3)
		assert.Empty(t, sys.settings)
	})
	t.Run("a 4xx is not tried again", func(t *testing.T) {
		sys := newSystem(t)
		sys.status = []int{http.StatusUnprocessableEntity}
		changed, err := New().Apply(tickCtx(), secretClient(testKey), target(sys.URL, sys.caBundle()), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "422 Unprocessable Entity (1 try)")
		assert.Len(t, sys.posts, 1)
	})
	t.Run("a wrong key is refused by the system", func(t *testing.T) {
		sys := newSystem(t)
		changed, err := New().Apply(tickCtx(), secretClient([]byte("not the system's key, 32 bytes..")), target(sys.URL, sys.caBundle()), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "401 Unauthorized: the signature does not match the body and timestamp (1 try)")
	})
	t.Run("no answer in time: may have been applied", func(t *testing.T) {
		sys := newSystem(t)
		sys.delay = time.Hour // until the client gives up
		tg := target(sys.URL, sys.caBundle())
		tg.Spec.External.Timeout.Duration = 300 * time.Millisecond
		changed, err := New().Apply(tickCtx(), secretClient(testKey), tg, settings("rate", "60"))
		assert.True(t, changed, "the system may have acted: the cooldown must hold")
		assert.ErrorContains(t, err, "POST "+sys.URL+": no answer within 300ms (3 tries): the change may have been applied, so the target's cooldown holds")
		// A try may give up before its request reaches the handler on a loaded machine
		// (whose handler may still be running: the count is read under the lock).
		assert.LessOrEqual(t, sys.postCount(), 3)
	})
	t.Run("down: nothing sent, not applied", func(t *testing.T) {
		sys := newSystem(t)
		url, ca := sys.URL, sys.caBundle()
		sys.Close()
		changed, err := New().Apply(tickCtx(), secretClient(testKey), target(url, ca), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "connection refused")
		assert.ErrorContains(t, err, "(3 tries)")
	})
	t.Run("a server the CA bundle does not vouch for", func(t *testing.T) {
		sys := newSystem(t)
		changed, err := New().Apply(tickCtx(), secretClient(testKey), target(sys.URL, nil), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "certificate")
		assert.Empty(t, sys.posts)
	})
	t.Run("no try starts that could not end before the tick's deadline", func(t *testing.T) {
		sys := newSystem(t)
		sys.status = []int{500, 500, 500}
		ctx, cancel := context.WithTimeout(tickCtx(), time.Minute)
		defer cancel()
		a := New()
		a.backoff = time.Hour // past the deadline: the first retry never starts
		changed, err := a.Apply(ctx, secretClient(testKey), target(sys.URL, sys.caBundle()), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "500 Internal Server Error (1 try)")
		assert.Len(t, sys.posts, 1)
	})
	t.Run("a redirect is not followed", func(t *testing.T) {
		sys := newSystem(t)
		sys.status = []int{http.StatusTemporaryRedirect}
		changed, err := New().Apply(tickCtx(), secretClient(testKey), target(sys.URL, sys.caBundle()), settings("rate", "60"))
		assert.False(t, changed)
		assert.ErrorContains(t, err, "307 Temporary Redirect")
		assert.Len(t, sys.posts, 1)
	})
	t.Run("a short key, no Secret, no tick, a bad CA bundle", func(t *testing.T) {
		tg := target("https://127.0.0.1:1", nil)
		_, err := New().Apply(tickCtx(), secretClient([]byte("short")), tg, settings("rate", "60"))
		assert.EqualError(t, err, `signing Secret lab/egress-key: its key "key" holds 5 bytes, at least 32 are needed`)
		_, err = New().Apply(tickCtx(), fake.NewClientBuilder().Build(), tg, settings("rate", "60"))
		assert.ErrorContains(t, err, `signing Secret lab/egress-key: secrets "egress-key" not found`)
		_, err = New().Apply(context.Background(), secretClient(testKey), tg, settings("rate", "60"))
		assert.EqualError(t, err, "external: acting outside a loop's tick (no idempotency key)")
		tg.Spec.External.CABundle = []byte("not PEM")
		_, err = New().Apply(tickCtx(), secretClient(testKey), tg, settings("rate", "60"))
		assert.EqualError(t, err, "caBundle holds no PEM certificate")
	})
}

// The current values are the system's answer to a GET; without one, what was last applied.
func TestRead(t *testing.T) {
	sys := newSystem(t)
	sys.settings = map[string]json.Number{"rate": "35", "other": "1", "ratio": "-1"}
	tg := target(sys.URL, sys.caBundle())
	tg.Applied = map[string]any{Field: map[string]any{"rate": json.Number("50"), "ratio": json.Number("0.5")}}
	a := New()
	cur, err := a.Read(context.Background(), secretClient(testKey), tg)
	require.NoError(t, err)
	same(t, settings("rate", "35", "ratio", "500m"), cur, "rate from the system; ratio, which it gives no valid value of, as last applied")
	assert.Equal(t, map[string]any{"rate": json.Number("35"), "ratio": json.Number("0.5")}, a.Doc(cur))

	sys.noGET = true
	cur, err = a.Read(context.Background(), secretClient(testKey), tg)
	require.NoError(t, err)
	same(t, settings("rate", "50", "ratio", "500m"), cur, "no GET: as last applied")

	tg.Applied = nil
	cur, err = a.Read(context.Background(), secretClient(testKey), tg)
	require.NoError(t, err)
	assert.Equal(t, Settings{}, cur, "nothing known")
	assert.Equal(t, map[string]any{}, a.Doc(cur))
}

// The registry reads an External target without a workload, with this actuator alone: the
// workloads' actuators neither read it nor show in its document.
func TestRegistryReadsExternalTargets(t *testing.T) {
	sys := newSystem(t)
	sys.settings = map[string]json.Number{"rate": "35"}
	tg := target(sys.URL, sys.caBundle())
	reg := actuators.NewRegistry(hpa.Actuator{}, replicas.Actuator{}, resources.Actuator{}, New())
	read, doc, err := reg.Read(context.Background(), secretClient(testKey), "lab", tg.Spec,
		&v1alpha1.TargetStatus{Name: "egress", Applied: &apiextensionsv1.JSON{Raw: []byte(`{"external": {"ratio": 0.5}}`)}}, actuators.Last{})
	require.NoError(t, err)
	assert.True(t, read.Exists)
	assert.Nil(t, read.Object)
	assert.Equal(t, map[string]any{"kind": "External", "namespace": "lab", "name": "lupus", "exists": true,
		"external": map[string]any{"rate": json.Number("35"), "ratio": json.Number("0.5")}}, doc)
}

func TestSimulate(t *testing.T) {
	a := New()
	start := a.Simulate(nil, nil, nil)
	assert.Equal(t, Settings{}, start)
	next := a.Simulate(nil, settings("rate", "40", "ratio", "1"), settings("rate", "60"))
	same(t, settings("rate", "60", "ratio", "1"), next, "rate set, ratio kept")
}
