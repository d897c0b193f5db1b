package bundles

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/bundleserver"
)

// TestDecisionLog: decisions go to the configured service (over HTTPS) as
// OPA's decision log events, with the loop, the bundle's revision, input
// and result.
func TestDecisionLog(t *testing.T) {
	svc := &bundleserver.DecisionLogs{}
	url, ca := bundleserver.ServeTLS(t, svc)
	cfg, err := ParseConfig([]byte(`services: {logs: {url: "`+url+`", tls: {ca_cert: "`+ca+`"}}}
decision_logs:
  service: logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}
`), Limits{})
	require.NoError(t, err)
	defer cfg.Close()
	require.NotNil(t, cfg.DecisionLog)
	reg := NewRegistry()
	require.NoError(t, reg.AddSources(cfg))
	require.NoError(t, reg.AddDir(context.Background(), "../policies"))
	ctx, stop := running(t, reg)

	engine, _ := reg.Engine("reactive")
	input := map[string]any{"params": map[string]any{}, "metrics": map[string]any{}, "targets": map[string]any{}}
	res, err := engine.Decide(ctx, Request{Decision: "governor/reactive/decision", Input: input})
	require.NoError(t, err)
	require.NoError(t, reg.LogDecision(ctx, Logged{Loop: "factory/scaling", Tick: 7, Decision: "governor/reactive/decision",
		Revision: res.From, Input: input, Result: res.Raw, Time: time.Now()}))

	deadline := time.Now().Add(10 * time.Second)
	for len(svc.Events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	events := svc.Events()
	require.Len(t, events, 1)
	ev := events[0]
	assert.Equal(t, "governor/reactive/decision", ev["path"])
	assert.Equal(t, map[string]any{"reactive": map[string]any{"revision": res.From.Revision()}}, ev["bundles"])
	assert.Equal(t, map[string]any{"loop": "factory/scaling", "tick": float64(7)}, ev["custom"])
	assert.Contains(t, ev, "input")
	assert.Contains(t, ev, "result")
	assert.NotEmpty(t, ev["decision_id"])
}

// TestDecisionLogConsole: decision_logs: {console: true} prints each
// decision to stdout, one JSON line as OPA prints it.
func TestDecisionLogConsole(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = w
	cfg, err := ParseConfig([]byte("decision_logs: {console: true}\n"), Limits{})
	os.Stdout = stdout
	require.NoError(t, err)
	defer cfg.Close()
	reg := NewRegistry()
	require.NoError(t, reg.AddSources(cfg))
	ctx, stop := running(t, reg)
	require.Eventually(t, func() bool {
		return reg.LogDecision(ctx, Logged{Loop: "factory/qos", Tick: 3, Decision: "governor/bandwidth/decision",
			Input: map[string]any{"tick": 3}, Result: map[string]any{}, Time: time.Now()}) == nil
	}, 5*time.Second, 50*time.Millisecond)
	stop()
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	require.NoError(t, err)
	var ev map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
	assert.Equal(t, "Decision Log", ev["msg"])
	assert.Equal(t, "governor/bandwidth/decision", ev["path"])
	assert.Equal(t, map[string]any{"loop": "factory/qos", "tick": float64(3)}, ev["custom"])
}

// TestDecisionLogMask: a bundle's system.log.mask policy masks the events
// of the decisions its revisions make before they leave the controller
// (OPA's logs plugin applies it), and its system.log.drop policy drops
// them; the decisions of a bundle without such policies are logged whole,
// before and after.
func TestDecisionLogMask(t *testing.T) {
	masked, err := Load(context.Background(), maskingBundle(t))
	require.NoError(t, err)
	plain, err := Load(context.Background(), "../policies/reactive")
	require.NoError(t, err)

	svc := &bundleserver.DecisionLogs{}
	reg := startDecisionLog(t, svc, 1)
	ctx, stop := running(t, reg)

	for tick, rev := range []*Revision{plain, masked, masked, plain} {
		input := map[string]any{"secret": "s3cret", "token": "t0ken", "visible": tick, "drop": tick == 2}
		require.NoError(t, reg.LogDecision(ctx, Logged{Loop: "ns/l", Tick: int64(tick), Decision: "t/decision",
			Revision: rev, Input: input, Result: map[string]any{}, Time: time.Now()}))
		assert.Equal(t, map[string]any{"secret": "s3cret", "token": "t0ken", "visible": tick, "drop": tick == 2}, input,
			"tick %v: the decision's own input is not masked", tick)
	}
	require.Eventually(t, func() bool { return len(svc.Events()) >= 3 }, 10*time.Second, 50*time.Millisecond)
	stop()

	events := svc.Events()
	require.Len(t, events, 3, "tick 2 is dropped")
	byTick := map[float64]map[string]any{}
	for _, ev := range events {
		byTick[ev["custom"].(map[string]any)["tick"].(float64)] = ev
	}
	for _, tick := range []float64{0, 3} {
		ev := byTick[tick]
		require.NotNil(t, ev, "tick %v", tick)
		assert.Equal(t, map[string]any{"secret": "s3cret", "token": "t0ken", "visible": tick, "drop": false}, ev["input"], "tick %v: no mask", tick)
		assert.NotContains(t, ev, "erased")
		assert.NotContains(t, ev, "masked")
	}
	ev := byTick[1]
	require.NotNil(t, ev)
	assert.Equal(t, map[string]any{"token": "redacted", "visible": float64(1), "drop": false}, ev["input"])
	assert.Equal(t, []any{"/input/secret"}, ev["erased"])
	assert.Equal(t, []any{"/input/token"}, ev["masked"])
}

// TestDecisionLogMaskDecisionPath: decision_logs.mask_decision moves the
// mask policy, as in OPA.
func TestDecisionLogMaskDecisionPath(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t.rego"), []byte("package t\n\ndecision := {}\n\nmask contains \"/input/secret\"\n"), 0o644))
	rev, err := Load(context.Background(), dir)
	require.NoError(t, err)
	svc := &bundleserver.DecisionLogs{}
	url, ca := bundleserver.ServeTLS(t, svc)
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`services: {logs: {url: %q, tls: {ca_cert: %q}}}
decision_logs: {service: logs, mask_decision: t/mask, reporting: {min_delay_seconds: 1, max_delay_seconds: 1}}
`, url, ca)), Limits{})
	require.NoError(t, err)
	defer cfg.Close()
	reg := NewRegistry()
	require.NoError(t, reg.AddSources(cfg))
	ctx, stop := running(t, reg)
	require.NoError(t, reg.LogDecision(ctx, Logged{Loop: "ns/l", Decision: "t/decision", Revision: rev,
		Input: map[string]any{"secret": "s3cret", "visible": 1}, Result: map[string]any{}, Time: time.Now()}))
	require.Eventually(t, func() bool { return len(svc.Events()) == 1 }, 10*time.Second, 50*time.Millisecond)
	stop()
	assert.Equal(t, map[string]any{"visible": float64(1)}, svc.Events()[0]["input"])
}

// TestDecisionLogMaskConcurrent: loops log concurrently, on a masking
// bundle and on one without a mask: each event is masked by its own
// revision, never by the other's.
func TestDecisionLogMaskConcurrent(t *testing.T) {
	masked, err := Load(context.Background(), maskingBundle(t))
	require.NoError(t, err)
	plain, err := Load(context.Background(), "../policies/reactive")
	require.NoError(t, err)
	svc := &bundleserver.DecisionLogs{}
	reg := startDecisionLog(t, svc, 1)
	ctx, stop := running(t, reg)

	const loops, ticks = 8, 25
	var wg sync.WaitGroup
	for l := range loops {
		wg.Go(func() {
			for tick := range ticks {
				rev := []*Revision{plain, masked}[(l+tick)%2]
				input := map[string]any{"secret": "s3cret", "token": "t0ken", "drop": false}
				assert.NoError(t, reg.LogDecision(ctx, Logged{Loop: fmt.Sprintf("ns/l%d", l), Tick: int64(tick), Decision: "t/decision",
					Revision: rev, Input: input, Result: map[string]any{}, Time: time.Now()}))
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { return len(svc.Events()) == loops*ticks }, 10*time.Second, 50*time.Millisecond)
	stop()
	for _, ev := range svc.Events() {
		want := map[string]any{"secret": "s3cret", "token": "t0ken", "drop": false}
		if _, ok := ev["bundles"].(map[string]any)[masked.Name()]; ok {
			want = map[string]any{"token": "redacted", "drop": false}
		}
		assert.Equal(t, want, ev["input"], "%v", ev["bundles"])
	}
}

// maskingBundle writes a bundle (roots t and system/log) whose
// system.log.mask erases input.secret and replaces input.token, and whose
// system.log.drop drops the events whose input has drop true.
func maskingBundle(t testing.TB) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		".manifest": `{"revision": "1", "roots": ["t", "system/log"]}`,
		"t.rego":    "package t\n\ndecision := {}\n",
		"mask.rego": `package system.log

mask contains "/input/secret"

mask contains {"op": "upsert", "path": "/input/token", "value": "redacted"}

drop if input.input.drop
`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

// startDecisionLog is a registry whose decision log uploads to svc over
// HTTPS every delay seconds; its Start is the caller's.
func startDecisionLog(t testing.TB, svc *bundleserver.DecisionLogs, delay int) *Registry {
	url, ca := bundleserver.ServeTLS(t, svc)
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`services: {logs: {url: %q, tls: {ca_cert: %q}}}
decision_logs: {service: logs, reporting: {min_delay_seconds: %d, max_delay_seconds: %d}}
`, url, ca, delay, delay)), Limits{})
	require.NoError(t, err)
	t.Cleanup(cfg.Close)
	reg := NewRegistry()
	require.NoError(t, reg.AddSources(cfg))
	return reg
}

// running starts reg (its decision log with it) until stop, which checks
// that it ended cleanly.
func running(t *testing.T, reg *Registry) (ctx context.Context, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Start(ctx) }()
	return ctx, func() {
		cancel()
		require.NoError(t, <-done)
	}
}
