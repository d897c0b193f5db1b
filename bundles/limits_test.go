package bundles

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/decision"
	"governor.dev/governor/test/bundleserver"
)

// revisionDir writes a bundle directory named scratch of files (name →
// content), with a manifest of revision rev and root t.
func revisionDir(t *testing.T, rev string, files map[string]string) string {
	t.Helper()
	files[".manifest"] = `{"revision":"` + rev + `","roots":["t"]}`
	return writeBundle(t, files)
}

// spinning is a decision that runs for hours: 10^10 steps.
const spinning = `package t

spins if {
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j < 0
}

decision := {} if not spins
`

// TestOutsideBuiltins: the builtins that reach the network or the
// process's environment are refused, the clock and randomness are not.
func TestOutsideBuiltins(t *testing.T) {
	outside := OutsideBuiltins()
	for _, name := range []string{"http.send", "net.lookup_ip_addr", "opa.runtime", "json.match_schema"} {
		assert.Contains(t, outside, name)
	}
	for _, name := range []string{"time.now_ns", "rand.intn", "uuid.rfc4122", "io.jwt.decode_verify", "count"} {
		assert.NotContains(t, outside, name)
	}
	assert.NoError(t, CheckAllowBuiltins([]string{"http.send", "opa.runtime"}))
	assert.ErrorContains(t, CheckAllowBuiltins([]string{"time.now_ns"}), "--allow-builtin time.now_ns: not a builtin governor refuses (those are: ")
	assert.ErrorContains(t, CheckAllowBuiltins([]string{"http.sned"}), "--allow-builtin http.sned")
}

// TestOutsideBuiltinsRefusedAtCompile: a policy calling http.send or
// opa.runtime does not load, each call named with its file and line, unless
// the builtin is allowed; the gate refuses it at compile.
func TestOutsideBuiltinsRefusedAtCompile(t *testing.T) {
	dir := revisionDir(t, "1", map[string]string{"t.rego": `package t

fetched := http.send({"method": "get", "url": "http://127.0.0.1:1/"})

env := opa.runtime().env

decision := {}
`})
	_, err := Load(context.Background(), dir)
	var ce *CompileError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Problems, 2)
	file := filepath.Join(dir, "t.rego")
	assert.Equal(t, CompileProblem{File: file, Line: 3, Column: 12, Code: "builtin_refused",
		Message: "http.send reaches outside the controller and is refused (governor run --allow-builtin http.send allows it)"}, ce.Problems[0])
	assert.Equal(t, 5, ce.Problems[1].Line)
	assert.Contains(t, ce.Problems[1].Message, "opa.runtime reaches outside the controller")
	assert.Contains(t, err.Error(), file+":3: builtin_refused: http.send reaches outside the controller")

	allowed := Limits{AllowBuiltins: []string{"http.send", "opa.runtime"}}
	_, err = LoadWithOptions(context.Background(), dir, LoadOptions{Limits: allowed})
	require.NoError(t, err)

	b, err := readBundle(dir, "b", dir, nil, DefaultMaxBundleFileBytes)
	require.NoError(t, err)
	e := NewEngine(gateBundle(t, "0", "0"))
	_, err = Gate(context.Background(), "b", "test", b, e, Checks{})
	var ge *GateError
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, StepCompile, ge.Step)
	assert.Contains(t, err.Error(), "bundle b@1 refused at compile: bundle b does not compile (2 errors): ")
	assert.Contains(t, err.Error(), "t.rego:3: builtin_refused: http.send reaches outside the controller")
	assert.Equal(t, "0", e.Active().Revision())
	_, err = Gate(context.Background(), "b", "test", b, e, Checks{Limits: allowed})
	require.NoError(t, err)
}

// TestBundleFileSizeLimit: a gzip bomb (256 MiB of zeros in 250 KiB) is
// refused while it is read, at the limit, without reading the rest.
func TestBundleFileSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	require.NoError(t, os.WriteFile(path, bundleserver.GzipBomb(t, "1", 256<<20), 0o644))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(context.Background(), path)
	runtime.ReadMemStats(&after)
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "data.json size (268435456 bytes) exceeds configured size_limit_bytes (33554432 bytes)")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(DefaultMaxBundleFileBytes), "read past the limit")
	t.Logf("refusing a 256 MiB gzip bomb allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)

	// A smaller limit, and a file under it.
	_, err = LoadWithOptions(context.Background(), path, LoadOptions{Limits: Limits{MaxBundleFileBytes: 1 << 20}})
	assert.ErrorContains(t, err, "exceeds configured size_limit_bytes (1048576 bytes)")
	small := filepath.Join(t.TempDir(), "b.tar.gz")
	require.NoError(t, os.WriteFile(small, bundleserver.GzipBomb(t, "1", 1000), 0o644))
	_, err = LoadWithOptions(context.Background(), small, LoadOptions{Limits: Limits{MaxBundleFileBytes: 1 << 20}})
	assert.ErrorContains(t, err, "data.json", "the zeros are not JSON: read, then refused")
	assert.NotContains(t, err.Error(), "size_limit_bytes")
}

// TestBundleTotalSizeLimit: the size limit bounds a whole bundle, not only
// each file: many files, each under it, whose sum is over it, are refused
// while read, from a directory and from a tarball (a bomb of 100 files of
// 1 MiB of zeros, stopped without inflating the rest).
func TestBundleTotalSizeLimit(t *testing.T) {
	lim := LoadOptions{Limits: Limits{MaxBundleFileBytes: 4 << 20}}
	files := map[string]string{"p.rego": "package t\n\ndecision := {}\n"}
	for i := range 3 {
		files[fmt.Sprintf("t/d%d/data.json", i)] = `{"x": "` + strings.Repeat("a", 1<<20) + `"}`
	}
	_, err := LoadWithOptions(context.Background(), revisionDir(t, "1", files), lim)
	require.NoError(t, err, "3 MiB in all, under 4 MiB")

	files["t/d3/data.json"] = files["t/d0/data.json"]
	dir := revisionDir(t, "2", files)
	_, err = LoadWithOptions(context.Background(), dir, lim)
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "bundle files total more than 4194304 bytes (the size limit of a whole bundle) with t/d3/data.json")
	_, err = LoadWithOptions(context.Background(), dir, LoadOptions{})
	require.NoError(t, err, "4 MiB in all, under the default 32 MiB")

	path := filepath.Join(t.TempDir(), "b.tar.gz")
	require.NoError(t, os.WriteFile(path, bundleserver.ManyFilesBomb(t, "1", 100, 1<<20), 0o644))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = LoadWithOptions(context.Background(), path, lim)
	runtime.ReadMemStats(&after)
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "bundle files total more than 4194304 bytes (the size limit of a whole bundle) with d3/data.json")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "read past the limit")
	t.Logf("refusing a bomb of 100 files of 1 MiB allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
}

// TestFollowRefusesGzipBomb: a gzip bomb on the bundle server is refused
// at read by the downloader, and the revision before it goes on deciding.
func TestFollowRefusesGzipBomb(t *testing.T) {
	srv := bundleserver.New()
	srv.Publish("b.tar.gz", tarball(t, "1", "1"))
	url := srv.Start(t)
	e, log := NewEmptyEngine("b"), &statusLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		NewFollower(sourceFor(t, url, "", ""), e, Hooks{OnStatus: log.set, Limits: Limits{MaxBundleFileBytes: 4 << 20}}).Run(ctx)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "revision 1", log, func(s Status) bool { return s.ActiveRevision == "b@1" })
	srv.Publish("b.tar.gz", bundleserver.GzipBomb(t, "2", 256<<20))
	st := waitFor(t, "the bomb refused", log, func(s Status) bool { return s.Refusals > 0 })
	var ge *GateError
	require.ErrorAs(t, st.LastError, &ge)
	assert.Equal(t, StepRead, ge.Step)
	assert.Contains(t, st.LastError.Error(), "exceeds configured size_limit_bytes (4194304 bytes)")
	assert.Equal(t, "1", e.Active().Revision())
}

// TestDecideTimeout: a decision past its time limit is stopped and is a
// *TimeoutError; one cut short by its caller is not.
func TestDecideTimeout(t *testing.T) {
	rev, err := Load(context.Background(), revisionDir(t, "1", map[string]string{"t.rego": spinning}))
	require.NoError(t, err)
	req := Request{Decision: "t/decision", Input: map[string]any{}, Timeout: 100 * time.Millisecond}
	_, err = rev.Decide(context.Background(), req)
	var te *TimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "evaluating t/decision in scratch@1: stopped after its time limit of 100ms", err.Error())

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	req.Timeout = time.Hour
	_, err = rev.Decide(ctx, req)
	var ee *EvalError
	assert.ErrorAs(t, err, &ee)
	assert.False(t, errors.As(err, &te), "cut short by the caller is no timeout: %v", err)
}

// TestGateEvaluatesLastInputs: a revision that errors, breaks the
// contract or runs past the time limit on a loop's last input is refused
// at evaluate, and the active revision stays.
func TestGateEvaluatesLastInputs(t *testing.T) {
	ctx := context.Background()
	good := `package t

decision := {"events": [sprintf("x is %v", [input.x])]}
`
	load := func(rev, policy string) *Revision {
		r, err := Load(ctx, revisionDir(t, rev, map[string]string{"t.rego": policy}))
		require.NoError(t, err)
		return r
	}
	e := NewEngine(load("1", good))
	// The good revisions must decide within the limit on a loaded machine
	// too (a GC or a busy CPU stalls a trivial evaluation for tens of
	// milliseconds); the spinning one takes all of it.
	probe := Probe{Loop: "factory/a", Decision: "t/decision", Input: map[string]any{"x": 1},
		Contract: decision.Contract{Targets: map[string]bool{}, Fields: builtin.Actuators}, Timeout: time.Second}
	checks := Checks{Decisions: []string{"t/decision"}, Probes: []Probe{probe}}
	cases := map[string]struct{ policy, want string }{
		"an error": {`package t

decision := {"events": ["a"]}

decision := {"events": ["b"]} if input.x == 1
`, "on loop factory/a's last input: evaluating t/decision in "},
		"the contract broken": {`package t

decision := {"events": [sprintf("%d", [i]) | some i in numbers.range(1, 40)]}
`, "events: 40 events, at most 32 allowed"},
		"no value": {`package t

decision := {} if input.x == 2
`, "the policy returned no value for this input"},
		"the time limit": {spinning, "stopped after its time limit of 1s"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Gate(ctx, "b", "test", load("2", c.policy).Bundle(), e, checks)
			var ge *GateError
			require.ErrorAs(t, err, &ge)
			assert.Equal(t, StepEvaluate, ge.Step)
			assert.Contains(t, err.Error(), "bundle b@2 refused at evaluate: on loop factory/a's last input: ")
			assert.Contains(t, err.Error(), c.want)
			assert.Equal(t, "1", e.Active().Revision())
		})
	}
	_, err := Gate(ctx, "b", "test", load("3", good).Bundle(), e, checks)
	require.NoError(t, err)
	assert.Equal(t, "3", e.Active().Revision())
}

// TestDecisionLogBuffer: the decision log's buffer is bounded in bytes:
// by the limit, or by the configuration's when smaller; other bounds are
// refused.
func TestDecisionLogBuffer(t *testing.T) {
	bound := func(config string, limit int64) int64 {
		t.Helper()
		cfg, err := ParseConfig([]byte(config), Limits{DecisionLogBufferBytes: limit})
		require.NoError(t, err)
		defer cfg.Close()
		return *cfg.DecisionLog.plugin.Config().Reporting.BufferSizeLimitBytes
	}
	assert.Equal(t, int64(1000), bound("decision_logs: {console: true}\n", 1000))
	assert.Equal(t, int64(DefaultDecisionLogBufferBytes), bound("decision_logs: {console: true}\n", 0))
	assert.Equal(t, int64(500), bound("decision_logs: {console: true, reporting: {buffer_size_limit_bytes: 500}}\n", 1000))
	assert.Equal(t, int64(1000), bound("decision_logs: {console: true, reporting: {buffer_size_limit_bytes: 5000}}\n", 1000))
	for config, want := range map[string]string{
		"decision_logs: {console: true, reporting: {buffer_type: event}}\n":           "reporting.buffer_type event is not supported",
		"decision_logs: {console: true, reporting: {max_decisions_per_second: 10}}\n": "reporting.max_decisions_per_second is not supported",
	} {
		_, err := ParseConfig([]byte(config), Limits{})
		assert.ErrorContains(t, err, want)
	}
}

// TestDecisionLogBufferHoldsWhileServiceIsDown: while the decision log
// service refuses every upload, what OPA's plugin holds stays within the
// buffer limit however many decisions are logged, the oldest dropped; once
// the service is back, what was held arrives (no more than the limit, the
// newest decision among it) and new decisions flow again.
func TestDecisionLogBufferHoldsWhileServiceIsDown(t *testing.T) {
	// The plugin's default upload_size_limit_bytes: the encoder holds up to
	// one such chunk besides the buffer.
	const limit, chunk = 64 << 10, 32 << 10
	svc := &downLogs{}
	svc.down.Store(true)
	url, ca := bundleserver.ServeTLS(t, svc)
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`services: {logs: {url: %q, tls: {ca_cert: %q}}}
decision_logs: {service: logs, reporting: {min_delay_seconds: 1, max_delay_seconds: 1}}
`, url, ca)), Limits{DecisionLogBufferBytes: limit})
	require.NoError(t, err)
	defer cfg.Close()
	reg := NewRegistry()
	require.NoError(t, reg.AddSources(cfg))
	ctx, stop := running(t, reg)

	// 2,000 decisions of 1 KiB of random base64 each: the buffer holds
	// gzipped chunks, and random input hardly compresses (~0.75 KiB), so
	// they are some 1.5 MiB to hold, over 20 times the limit.
	const n = 2000
	logged := func(tick int) Logged {
		noise := make([]byte, 768)
		_, _ = rand.Read(noise)
		return Logged{Loop: "ns/l", Tick: int64(tick), Decision: "t/decision",
			Input: map[string]any{"noise": base64.StdEncoding.EncodeToString(noise)}, Result: map[string]any{}, Time: time.Now()}
	}
	var peak int64
	for tick := range n {
		require.NoError(t, reg.LogDecision(ctx, logged(tick)))
		_, held := cfg.DecisionLog.plugin.BufferSize()
		peak = max(peak, held)
	}
	// Two more refusals: an upload started after the last decision, which
	// flushed the encoder's last chunk into the buffer.
	refused := svc.refused.Load()
	require.Eventually(t, func() bool { return svc.refused.Load() >= refused+2 }, 30*time.Second, 50*time.Millisecond)
	_, held := cfg.DecisionLog.plugin.BufferSize()
	assert.Positive(t, held)
	assert.LessOrEqual(t, held, int64(limit))
	assert.LessOrEqual(t, peak, int64(limit))
	assert.Empty(t, svc.Events())

	svc.down.Store(false)
	require.Eventually(t, func() bool { return slices.Contains(svc.ticks(), n-1) }, 30*time.Second, 50*time.Millisecond,
		"the newest decision arrives once the service is back")
	ticks := svc.ticks()
	assert.LessOrEqual(t, svc.received.Load(), int64(limit+chunk), "bytes uploaded after the service came back")
	assert.False(t, slices.Contains(ticks, 0), "the oldest decisions were dropped")
	assert.Less(t, len(ticks), n/10)
	t.Logf("%d uploads refused; %d bytes held at most; %d decisions (%d bytes) uploaded once back", svc.refused.Load(), peak, len(ticks), svc.received.Load())

	require.NoError(t, reg.LogDecision(ctx, logged(n)))
	require.Eventually(t, func() bool { return slices.Contains(svc.ticks(), n) }, 30*time.Second, 50*time.Millisecond,
		"a decision logged after the service came back arrives")
	stop()
}

// downLogs is a decision log service that refuses every upload (503) while
// down, and takes them otherwise, counting the bytes it takes (gzipped, as
// sent).
type downLogs struct {
	bundleserver.DecisionLogs
	down              atomic.Bool
	refused, received atomic.Int64
}

func (s *downLogs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		s.refused.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.received.Add(int64(len(body)))
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.DecisionLogs.ServeHTTP(w, r)
}

// ticks are the ticks of the events taken.
func (s *downLogs) ticks() []int {
	var ticks []int
	for _, ev := range s.Events() {
		ticks = append(ticks, int(ev["custom"].(map[string]any)["tick"].(float64)))
	}
	return ticks
}
