//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/bundleserver"
)

// spins is a Rego body that runs for hours (10^10 steps).
const spins = `some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j < 0`

// hostile are revisions of the bundle "hostile" (root hostile): policy and
// test files. Each passes its own test, which decides on x = 2; the loop
// decides on x = 1.
var hostile = map[string]map[string]string{
	"good": {"hostile.rego": `package hostile

decision := {"events": [sprintf("x=%v", [input.params.x])]}
`},
	"http.send": {"hostile.rego": `package hostile

fetched := http.send({"method": "get", "url": "http://127.0.0.1:1/"})

decision := {"events": [sprintf("%v", [fetched.status_code])]}
`},
	"spins on the loop's input": {"hostile.rego": `package hostile

spins if {
	input.params.x == 1
	` + spins + `
}

decision := {"events": ["done"]} if not spins
`},
	"breaks the contract on the loop's input": {"hostile.rego": `package hostile

decision := {"events": [1]} if input.params.x == 1

decision := {"events": ["ok"]} if input.params.x != 1
`},
}

// hostileTarball is revision rev of the hostile bundle's variant.
func hostileTarball(t *testing.T, rev, variant string) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		".manifest":         fmt.Sprintf(`{"revision": %q, "roots": ["hostile"]}`, rev),
		"hostile_test.rego": "package hostile\n\ntest_decides if count(decision.events) == 1 with input as {\"params\": {\"x\": 2}}\n",
	}
	for name, body := range hostile[variant] {
		files[name] = body
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).AsBundle(dir)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, bundle.NewWriter(&buf).Write(*b))
	return buf.Bytes()
}

// TestHostileBundles: revisions that call http.send, are a gzip bomb, or
// on a loop's last input run past its time limit or break the contract are
// each refused with a one-line reason in the loops' BundleHealthy
// condition and history, while the last good revision goes on deciding;
// then a good one goes live.
func TestHostileBundles(t *testing.T) {
	e := newEnv(t)
	srv := bundleserver.New()
	srv.Publish("hostile.tar.gz", hostileTarball(t, "1", "good"))
	url := srv.Start(t)
	cfg, err := bundles.ParseConfig([]byte(`services: {s: {url: "`+url+`"}}
bundles:
  hostile:
    service: s
    resource: hostile.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1, long_polling_timeout_seconds: 10}
`), bundles.Limits{AllowUnsignedBundles: true, AllowInsecureServices: true}) // about what a revision may take: signatures and TLS are TestBundleDistribution's
	require.NoError(t, err)
	t.Cleanup(cfg.Close)
	e.bundles.SetLimits(bundles.Limits{MaxBundleFileBytes: 8 << 20})
	require.NoError(t, e.bundles.AddSources(cfg))
	e.startManager(t)

	ns := e.namespace(t)
	spec := echoSpec(`{}`)
	spec.Policy.Bundle, spec.Policy.Decision = "hostile", "hostile/decision"
	spec.Policy.Params = &apiextensionsv1.JSON{Raw: []byte(`{"x": 1}`)}
	spec.Policy.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	e.loop(t, ns, "a", spec)
	decidesWith := func(rev string) {
		t.Helper()
		eventually(t, 30*time.Second, func() (bool, string) {
			h, desc := lastEntry(e.get(t, ns, "a"))
			return h.Revision == rev && h.Error == "" && joined(h.Events) == "x=1", desc
		})
	}
	decidesWith("hostile@1")

	for i, bad := range []struct {
		name    string
		tarball []byte
		want    []string
	}{
		{"http.send", hostileTarball(t, "2", "http.send"), []string{"refused at compile", "/hostile.rego:3: builtin_refused: http.send reaches outside the controller and is refused (governor run --allow-builtin http.send allows it)"}},
		{"a gzip bomb", bundleserver.GzipBomb(t, "3", 1<<30), []string{"refused at read", "data.json size (1073741824 bytes) exceeds configured size_limit_bytes (8388608 bytes)"}},
		{"spins on the loop's input", hostileTarball(t, "4", "spins on the loop's input"), []string{"refused at evaluate: on loop " + ns + "/a's last input: evaluating hostile/decision in hostile@4: stopped after its time limit of 300ms"}},
		{"breaks the contract on the loop's input", hostileTarball(t, "5", "breaks the contract on the loop's input"), []string{"refused at evaluate: on loop " + ns + "/a's last input: invalid decision hostile/decision from hostile@5: events[0]: must be a string, got number 1"}},
	} {
		before := e.get(t, ns, "a").Status.Tick
		srv.Publish("hostile.tar.gz", bad.tarball)
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
			ok := c != nil && c.Status == metav1.ConditionFalse && c.Reason == "RevisionRefused" &&
				strings.Contains(c.Message, "(deciding with: hostile@1)") && !strings.Contains(c.Message, "\n")
			noted := false
			for _, h := range l.Status.History {
				noted = noted || strings.Contains(joined(h.Guard), "Bundle: bundle hostile@")
			}
			for _, want := range bad.want {
				ok = ok && strings.Contains(c.Message, want)
				noted = noted && slices.ContainsFunc(l.Status.History, func(h v1alpha1.HistoryEntry) bool { return strings.Contains(joined(h.Guard), want) })
			}
			return ok && noted, fmt.Sprintf("%s: %v; noted in the history: %t", bad.name, c, noted)
		})
		eventually(t, 10*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			h, desc := lastEntry(l)
			return l.Status.Tick > before+2 && h.Revision == "hostile@1" && h.Error == "" && l.Status.Phase == v1alpha1.PhaseRunning,
				fmt.Sprintf("%s: the loop must keep deciding with hostile@1: %s", bad.name, desc)
		})
		st, _ := e.bundles.Status("hostile")
		assert.Equal(t, i+1, st.Refusals, bad.name)
	}

	srv.Publish("hostile.tar.gz", hostileTarball(t, "6", "good"))
	decidesWith("hostile@6")
}

// TestHostileDecisions: on the real API server, a decision that runs past
// its time limit fails its tick, recorded, while other loops go on; a
// decision over the output limits is rejected whole, naming the limit; a
// loop whose history would outgrow the status limit (and the API server's
// limit on an object, here) drops its oldest entries and goes on writing,
// its policy state kept whole.
func TestHostileDecisions(t *testing.T) {
	e := newEnv(t)
	spinDir := filepath.Join(t.TempDir(), "spin")
	require.NoError(t, os.MkdirAll(spinDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(spinDir, "spin.rego"), []byte("package spin\n\nspins if {\n\t"+spins+"\n}\n\ndecision := {} if not spins\n"), 0o644))
	cfg, err := bundles.ParseConfig([]byte("bundles: {spin: {resource: \"file://"+spinDir+"\"}}\n"), bundles.Limits{})
	require.NoError(t, err)
	t.Cleanup(cfg.Close)
	require.NoError(t, e.bundles.AddSources(cfg))
	e.startManagerWith(t, controller.Options{MaxStatusBytes: 256 << 10})
	ns := e.namespace(t)

	spin := echoSpec(`{}`)
	spin.Policy.Bundle, spin.Policy.Decision = "spin", "spin/decision"
	spin.Policy.Timeout = &metav1.Duration{Duration: 200 * time.Millisecond}
	e.loop(t, ns, "spinner", spin)

	events := make([]string, 40)
	for i := range events {
		events[i] = fmt.Sprintf("%q", fmt.Sprint(i))
	}
	e.loop(t, ns, "chatty", echoSpec(`{"events": [`+strings.Join(events, ",")+`]}`))

	// 32 events of 500 bytes: about 16 KiB an entry, 3 MiB for 200 of
	// them, twice the API server's limit on an object.
	long := make([]string, 32)
	for i := range long {
		long[i] = fmt.Sprintf("%q", strings.Repeat(fmt.Sprint(i%10), 500))
	}
	state := fmt.Sprintf(`{"memory": %q}`, strings.Repeat("m", 60<<10))
	big := echoSpec(`{"events": [` + strings.Join(long, ",") + `], "state": ` + state + `}`)
	big.Interval = metav1.Duration{Duration: 100 * time.Millisecond}
	big.HistoryLimit = 200
	e.loop(t, ns, "big", big)

	eventually(t, 20*time.Second, func() (bool, string) {
		l := e.get(t, ns, "spinner")
		h, desc := lastEntry(l)
		c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionPolicyReady)
		return l.Status.Phase == v1alpha1.PhaseDegraded && c != nil && c.Reason == "DecisionTimedOut" &&
			h.Error == "evaluating spin/decision in spin@unversioned: stopped after its time limit of 200ms", desc
	})
	eventually(t, 20*time.Second, func() (bool, string) {
		h, desc := lastEntry(e.get(t, ns, "chatty"))
		return strings.HasPrefix(h.Error, "decision rejected: invalid decision test/echo/decision from echo@echo-1: events: 40 events, at most 32 allowed"), desc
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		l := e.get(t, ns, "big")
		h, _ := lastEntry(l)
		raw, err := json.Marshal(l.Status)
		require.NoError(t, err)
		trimmed := strings.Contains(joined(h.Guard), "Trimmed: the ")
		return trimmed && l.Status.Tick > 40 && len(raw) <= 256<<10,
			fmt.Sprintf("tick %d, %d history entries, status %d bytes, guard %q", l.Status.Tick, len(l.Status.History), len(raw), h.Guard)
	})
	l := e.get(t, ns, "big")
	raw, err := json.Marshal(l.Status)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(raw), 256<<10)
	assert.JSONEq(t, state, string(l.Status.State.Raw), "the policy's state is kept whole")
	spinner := e.get(t, ns, "spinner")
	assert.Greater(t, spinner.Status.Tick, int64(1), "the spinning loop goes on ticking, and failing")
}
