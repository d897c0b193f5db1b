//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/actuators/external"
	"governor.dev/governor/actuators/external/signature"
	"governor.dev/governor/api/v1alpha1"
)

// lupusKey is the key the egress agents and the loops share.
var lupusKey = []byte("lupus egress agent key, 32 bytes+")

// lupus is a managed system outside Kubernetes, as a Lupus egress agent would be: it
// verifies every request as the README's recipe says (signature, timestamp window, no
// signature accepted twice), answers a GET with its settings, and applies a POST's settings
// once per idempotency key. A slow agent takes its delay before it answers, and applies the
// change all the same, as a real one would, the client gone or not.
type lupus struct {
	srv *httptest.Server
	mu  sync.Mutex
	// settings are the agent's current values.
	settings map[string]json.Number
	// fail answers POSTs with this status while it is not 0.
	fail  int
	delay time.Duration
	noGET bool
	// seen are the signatures accepted; applied counts the requests of each idempotency
	// key answered 2xx (the settings change at the first).
	seen    map[string]bool
	applied map[string]int
	posts   []post
}

// post is a POST the agent accepted (signature and timestamp checked).
type post struct {
	at     time.Time
	header http.Header
	body   []byte
	change external.Change
}

// newLupus starts an agent with its settings, listening on listener (a new port when nil).
func newLupus(t *testing.T, settings map[string]json.Number, listener net.Listener) *lupus {
	a := &lupus{settings: settings, seen: map[string]bool{}, applied: map[string]int{}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	if listener != nil {
		_ = a.srv.Listener.Close()
		a.srv.Listener = listener
	}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

// caBundle is the agent's certificate, PEM: every httptest TLS server has it.
func (a *lupus) caBundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
}

func (a *lupus) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := signature.Verify(r.Header, lupusKey, body, time.Now(), 30*time.Second); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	sig := r.Header.Get(signature.SignatureHeader)
	if a.seen[sig] {
		a.mu.Unlock()
		http.Error(w, "replayed: this signature was accepted before", http.StatusConflict)
		return
	}
	a.seen[sig] = true
	if r.Method == http.MethodGet {
		defer a.mu.Unlock()
		if a.noGET {
			http.Error(w, "GET not offered", http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(a.settings)
		return
	}
	var c external.Change
	if err := json.Unmarshal(body, &c); err != nil {
		a.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.posts = append(a.posts, post{at: time.Now(), header: r.Header.Clone(), body: body, change: c})
	fail, delay := a.fail, a.delay
	a.mu.Unlock()
	time.Sleep(delay)
	if fail != 0 {
		http.Error(w, "egress agent failure", fail)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := r.Header.Get(external.IdempotencyKeyHeader)
	if a.applied[key] == 0 {
		raw, _ := json.Marshal(c.Settings)
		var s map[string]json.Number
		_ = json.Unmarshal(raw, &s)
		for name, v := range s {
			a.settings[name] = v
		}
	}
	a.applied[key]++
	w.WriteHeader(http.StatusNoContent)
}

// snapshot is what the agent holds now.
func (a *lupus) snapshot() (settings map[string]json.Number, posts []post, applied map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	settings, applied = map[string]json.Number{}, map[string]int{}
	for k, v := range a.settings {
		settings[k] = v
	}
	for k, v := range a.applied {
		applied[k] = v
	}
	return settings, append([]post(nil), a.posts...), applied
}

func (a *lupus) set(change func(*lupus)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	change(a)
}

// externalTarget is an External target on the agent: rate in [10, 100], at most 20 a change.
func externalTarget(a *lupus, url string) v1alpha1.TargetSpec {
	return v1alpha1.TargetSpec{Name: "egress", Ref: v1alpha1.TargetRef{Kind: v1alpha1.TargetExternal, Name: "lupus"},
		External: &v1alpha1.ExternalTarget{URL: url, SigningSecret: "lupus-key", CABundle: a.caBundle(),
			Timeout: &metav1.Duration{Duration: 300 * time.Millisecond}, Retries: ptr(int32(1)),
			Settings: []v1alpha1.ExternalSetting{{Name: "rate", QuantityRange: v1alpha1.QuantityRange{
				Min: resource.MustParse("10"), Max: resource.MustParse("100"), MaxStep: ptr(resource.MustParse("20"))}}}}}
}

// askRate90 always asks for rate 90.
const askRate90 = `{"actions": [{"target": "egress", "set": {"external": {"rate": 90}}, "reason": "more egress"}]}`

// TestExternalTarget runs the controller on a real API server against Lupus egress agents
// served over HTTPS by the test: a change bounded by the guard, signed and applied once; a
// slow agent, a down one, one that answers 500 and one that offers no GET.
func TestExternalTarget(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t)
	ctx := context.Background()
	require.NoError(t, e.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lupus-key"},
		Data: map[string][]byte{external.KeyName: lupusKey}}))
	stop := e.startManager(t)

	// history is the loop's history, and the loop.
	history := func(name string) ([]v1alpha1.HistoryEntry, *v1alpha1.ControlLoop) {
		l := e.get(t, ns, name)
		return l.Status.History, l
	}
	// waitEntry waits for a history entry that matches, and returns it.
	waitEntry := func(name, what string, match func(v1alpha1.HistoryEntry) bool) v1alpha1.HistoryEntry {
		var found v1alpha1.HistoryEntry
		eventually(t, time.Minute, func() (bool, string) {
			h, _ := history(name)
			for _, entry := range h {
				if match(entry) {
					found = entry
					return true, ""
				}
			}
			raw, _ := json.Marshal(h)
			return false, "no entry " + what + " in " + string(raw)
		})
		return found
	}
	applied := func(entry v1alpha1.HistoryEntry) bool { return len(entry.Applied) > 0 }
	failed := func(msg string) func(v1alpha1.HistoryEntry) bool {
		return func(entry v1alpha1.HistoryEntry) bool { return strings.Contains(joined(entry.Guard), msg) }
	}

	t.Run("a change bounded by the guard, signed, applied once; a replay refused", func(t *testing.T) {
		agent := newLupus(t, map[string]json.Number{"rate": "40"}, nil)
		e.loop(t, ns, "steady", echoSpec(askRate90, externalTarget(agent, agent.srv.URL+"/settings")))
		entry := waitEntry("steady", "applied", applied)
		assert.JSONEq(t, `{"external": {"rate": 60}}`, string(entry.Applied[0].Set.Raw), "one step of 20 from the agent's 40")
		assert.Contains(t, joined(entry.Guard), "Clamped egress: external rate 90 limited to one step (20) above 40")

		time.Sleep(2 * time.Second) // ticks inside the cooldown (1h)
		settings, posts, done := agent.snapshot()
		assert.Equal(t, map[string]json.Number{"rate": "60"}, settings)
		require.Len(t, posts, 1, "one change within the cooldown")
		l := e.get(t, ns, "steady")
		require.Len(t, l.Status.Targets, 1)
		require.NotNil(t, l.Status.Targets[0].LastChange)
		assert.Equal(t, string(l.UID)+"/"+itoa(entry.Tick)+"/"+itoa(l.Status.Targets[0].LastChange.UnixMicro())+"/egress",
			posts[0].header.Get(external.IdempotencyKeyHeader), "the loop, the tick, its intent, the target")
		assert.Contains(t, string(posts[0].body), `"settings":{"rate":60}`)
		assert.Equal(t, external.Change{Settings: posts[0].change.Settings, Loop: ns + "/steady", Target: "egress", Tick: entry.Tick,
			IdempotencyKey: posts[0].header.Get(external.IdempotencyKeyHeader)}, posts[0].change)
		assert.Equal(t, 1, done[posts[0].header.Get(external.IdempotencyKeyHeader)])
		require.Len(t, l.Status.Targets, 1)
		assert.JSONEq(t, `{"external": {"rate": 60}}`, string(l.Status.Targets[0].Applied.Raw), "kept in the status")
		h, _ := history("steady")
		last := h[len(h)-1]
		assert.Contains(t, joined(last.Guard), "Refused egress: in cooldown", "the agent's GET says 60: the policy's 90 waits for the cooldown")

		// The same request again, as an eavesdropper would replay it: refused.
		assert.Equal(t, http.StatusConflict, resend(t, agent, posts[0].header, posts[0].body))
		// A fresh timestamp on the old signature: refused.
		moved := posts[0].header.Clone()
		moved.Set(signature.TimestampHeader, itoa(time.Now().UnixMilli()))
		assert.Equal(t, http.StatusUnauthorized, resend(t, agent, moved, posts[0].body))
		// Another body under the old signature: refused.
		assert.Equal(t, http.StatusUnauthorized, resend(t, agent, posts[0].header, bytes.Replace(posts[0].body, []byte("60"), []byte("99"), 1)))
		settings, _, _ = agent.snapshot()
		assert.Equal(t, map[string]json.Number{"rate": "60"}, settings, "nothing replayed was applied")
	})

	t.Run("a slow agent: no answer in time, the cooldown holds, no second change inside it", func(t *testing.T) {
		agent := newLupus(t, map[string]json.Number{"rate": "40"}, nil)
		agent.set(func(a *lupus) { a.delay = 1500 * time.Millisecond })
		spec := echoSpec(askRate90, externalTarget(agent, agent.srv.URL))
		spec.Safety.Cooldown = metav1.Duration{Duration: 4 * time.Second}
		spec.HistoryLimit = 100
		e.loop(t, ns, "slow", spec)
		first := waitEntry("slow", "failed", failed("no answer within 300ms (2 tries): the change may have been applied, so the target's cooldown holds"))
		agent.set(func(a *lupus) { a.delay = 0 })
		require.Len(t, first.Applied, 1, "recorded as (maybe) applied: its cooldown starts")
		second := waitEntry("slow", "applied after the first", func(entry v1alpha1.HistoryEntry) bool {
			return entry.Tick > first.Tick && len(entry.Applied) > 0
		})
		// Its tick may come up to minInterval (50 ms) before the cooldown
		// ends; its intent, and the change, no sooner than the end.
		assert.GreaterOrEqual(t, second.Time.Sub(first.Time.Time), 4*time.Second-50*time.Millisecond, "not before the cooldown's end")
		assert.JSONEq(t, `{"external": {"rate": 80}}`, string(second.Applied[0].Set.Raw), "a step from the 60 the slow agent applied late, as its GET says")

		settings, posts, done := agent.snapshot()
		intents := map[int64]time.Time{} // tick → its intent, from the idempotency keys
		for _, p := range posts {
			parts := strings.Split(p.header.Get(external.IdempotencyKeyHeader), "/")
			require.Len(t, parts, 4)
			tick, err := strconv.ParseInt(parts[1], 10, 64)
			require.NoError(t, err)
			micros, err := strconv.ParseInt(parts[2], 10, 64)
			require.NoError(t, err)
			intents[tick] = time.UnixMicro(micros)
		}
		require.Contains(t, intents, first.Tick)
		require.Contains(t, intents, second.Tick)
		assert.GreaterOrEqual(t, intents[second.Tick].Sub(intents[first.Tick]), 4*time.Second, "the second change's intent inside the cooldown from the first's")
		assert.Equal(t, map[string]json.Number{"rate": "80"}, settings)
		keys := map[string]int{}
		for _, p := range posts {
			keys[p.header.Get(external.IdempotencyKeyHeader)]++
			assert.True(t, p.at.Before(first.Time.Add(2*time.Second)) || !p.at.Before(first.Time.Add(4*time.Second)),
				"a POST at %s, inside the cooldown from %s", p.at, first.Time)
		}
		assert.Len(t, keys, 2, "two changes: the slow one (tried twice, one key) and the one after the cooldown")
		assert.Len(t, done, 2, "each applied")
		h, _ := history("slow")
		for _, entry := range h {
			if entry.Tick > first.Tick && entry.Tick < second.Tick {
				assert.Contains(t, joined(entry.Guard), "Refused egress: in cooldown", "tick %d", entry.Tick)
			}
		}
	})

	t.Run("an agent that answers 500: a failure each tick, tried again at the next, then applied", func(t *testing.T) {
		agent := newLupus(t, map[string]json.Number{"rate": "40"}, nil)
		agent.set(func(a *lupus) { a.fail = http.StatusInternalServerError })
		e.loop(t, ns, "failing", echoSpec(askRate90, externalTarget(agent, agent.srv.URL)))
		first := waitEntry("failing", "failed", failed("Failed egress: actuation failed: external: POST "+agent.srv.URL+": 500 Internal Server Error: egress agent failure (2 tries)"))
		assert.Empty(t, first.Applied)
		waitEntry("failing", "failed again at the next tick", func(entry v1alpha1.HistoryEntry) bool {
			return entry.Tick == first.Tick+1 && failed("500 Internal Server Error")(entry)
		})
		agent.set(func(a *lupus) { a.fail = 0 })
		entry := waitEntry("failing", "applied", applied)
		assert.JSONEq(t, `{"external": {"rate": 60}}`, string(entry.Applied[0].Set.Raw))
		_, l := history("failing")
		require.Len(t, l.Status.Targets, 1)
		// The intent of the applying tick: at its start, or later when the
		// intent waited for a status write in flight; never a failure's.
		assert.GreaterOrEqual(t, l.Status.Targets[0].LastChange.UnixMicro(), entry.Time.UnixMicro(), "the cooldown starts at the change, not at the failures")
	})

	t.Run("an agent that is down, then up", func(t *testing.T) {
		agent := newLupus(t, map[string]json.Number{"rate": "40"}, nil)
		addr := agent.srv.Listener.Addr().String()
		url := agent.srv.URL
		agent.srv.Close()
		e.loop(t, ns, "down", echoSpec(askRate90, externalTarget(agent, url)))
		first := waitEntry("down", "failed", failed("connection refused"))
		assert.Empty(t, first.Applied)
		assert.Contains(t, joined(first.Guard), "(2 tries)")
		waitEntry("down", "failed again at the next tick", func(entry v1alpha1.HistoryEntry) bool {
			return entry.Tick == first.Tick+1 && failed("connection refused")(entry)
		})

		listener, err := net.Listen("tcp", addr)
		require.NoError(t, err)
		up := newLupus(t, map[string]json.Number{"rate": "40"}, listener)
		entry := waitEntry("down", "applied", applied)
		// From 40, as the agent's GET says, one step; straight to 90 (within the bounds) when
		// the tick read the agent while it was still down: its value then unknown.
		want := `{"external": {"rate": 90}}`
		if strings.Contains(joined(entry.Guard), "limited to one step (20) above 40") {
			want = `{"external": {"rate": 60}}`
		}
		assert.JSONEq(t, want, string(entry.Applied[0].Set.Raw))
		settings, _, _ := up.snapshot()
		assert.JSONEq(t, want, `{"external": {"rate": `+settings["rate"].String()+`}}`, "the agent has it")
	})

	t.Run("an agent without GET: the last value applied is the current one, across a restart", func(t *testing.T) {
		// Last: it restarts the controller.
		agent := newLupus(t, map[string]json.Number{"rate": "40"}, nil)
		agent.set(func(a *lupus) { a.noGET = true })
		spec := echoSpec(askRate90, externalTarget(agent, agent.srv.URL))
		spec.Safety.Cooldown = metav1.Duration{Duration: time.Second}
		e.loop(t, ns, "blind", spec)
		entry := waitEntry("blind", "applied", applied)
		assert.JSONEq(t, `{"external": {"rate": 90}}`, string(entry.Applied[0].Set.Raw), "nothing known: straight to 90, within the bounds")
		waitEntry("blind", "unchanged after the cooldown", func(h v1alpha1.HistoryEntry) bool {
			return h.Tick > entry.Tick && strings.Contains(joined(h.Guard), "Unchanged egress: already as asked")
		})
		stop()
		h, _ := history("blind")
		before := h[len(h)-1].Tick
		e.startManager(t)
		waitEntry("blind", "unchanged after the restart", func(h v1alpha1.HistoryEntry) bool {
			return h.Tick > before && strings.Contains(joined(h.Guard), "Unchanged egress: already as asked")
		})
		_, posts, _ := agent.snapshot()
		assert.Len(t, posts, 1, "one change, never made again")
	})
}

// resend sends a recorded request to the agent again, as an eavesdropper would.
func resend(t *testing.T, a *lupus, header http.Header, body []byte) int {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(a.srv.Certificate())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+"/settings", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = header.Clone()
	resp, err := c.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
