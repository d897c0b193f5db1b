//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/testkeys"
)

// Variants of the fleet bundle a test publishes.
const (
	good        = "good"
	compileErr  = "compile-error"
	failingTest = "failing-test"
	renamed     = "renamed" // compiles and passes its tests, but has no fleet/decision
)

// fleetTarball is revision rev of the "fleet" bundle, signed with k, as
// `opa build --signing-key` writes it. Its decision is {} (no action); a
// compile-error variant calls a function that does not exist, and a
// failing-test variant has a test that fails.
func fleetTarball(t testing.TB, rev, variant string, k testkeys.Pair) []byte {
	t.Helper()
	decision, want := "{}", "0"
	switch variant {
	case compileErr:
		decision = "no_such_function(1)"
	case failingTest:
		want = "1"
	}
	rule := "decision"
	if variant == renamed {
		rule = "verdict"
	}
	dir := t.TempDir()
	files := map[string]string{
		".manifest":       fmt.Sprintf(`{"revision": %q, "roots": ["fleet"]}`, rev),
		"fleet.rego":      "package fleet\n\n" + rule + " := " + decision + "\n",
		"fleet_test.rego": "package fleet\n\ntest_decision if count(" + rule + ") == " + want + "\n",
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).AsBundle(dir)
	require.NoError(t, err)
	require.NoError(t, b.GenerateSignature(bundle.NewSigningConfig(k.Private, "RS256", ""), "release", false))
	var buf bytes.Buffer
	require.NoError(t, bundle.NewWriter(&buf).Write(*b))
	return buf.Bytes()
}

var publishClock atomic.Int64

// publishFile replaces root/name whole, with a new mtime so that nginx's
// ETag changes.
func publishFile(t testing.TB, root, name string, raw []byte) {
	t.Helper()
	tmp := filepath.Join(root, "."+name+".tmp")
	require.NoError(t, os.WriteFile(tmp, raw, 0o644))
	at := time.Unix(1_700_000_000+publishClock.Add(10), 0)
	require.NoError(t, os.Chtimes(tmp, at, at))
	require.NoError(t, os.Rename(tmp, filepath.Join(root, name)))
}

// opaConfig follows the fleet bundle on url, signed with k's key "release",
// and when logsURL is not empty sends decision logs there.
func opaConfig(url string, k testkeys.Pair, polling, logsURL string) string {
	cfg := fmt.Sprintf(`services:
  bundles:
    url: %s
bundles:
  fleet:
    service: bundles
    resource: fleet.tar.gz
    polling: %s
    signing:
      keyid: release
keys:
  release:
    algorithm: RS256
    key: |
      %s
`, url, polling, strings.ReplaceAll(strings.TrimSpace(k.Public), "\n", "\n      "))
	if logsURL != "" {
		cfg = strings.Replace(cfg, "services:\n", "services:\n  logs:\n    url: "+logsURL+"\n", 1) +
			"decision_logs:\n  service: logs\n  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}\n"
	}
	return cfg
}

// fleetSpec is a loop on the fleet bundle, pinned to a revision or not.
func fleetSpec(pin string) v1alpha1.ControlLoopSpec {
	spec := echoSpec(`{}`)
	spec.Policy.Bundle, spec.Policy.Decision, spec.Policy.Revision = "fleet", "fleet/decision", pin
	return spec
}

// TestBundleDistribution is the sequence, with the governor binary
// reading its OPA configuration from a ConfigMap and following a signed
// bundle on nginx: revision 2 goes live for every loop; a compile error, a
// failing test, a bad signature and a revision without the loops' decision
// are each refused with a clear status while revision 2 keeps deciding;
// revision 3 goes live. A loop pinned to revision 2 stays on it. Decisions
// go to a decision log service.
func TestBundleDistribution(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	key, other := testkeys.RSA(t), testkeys.RSA(t)
	root := t.TempDir()
	url := bundleserver.StartNginx(t, root)

	decisions := &bundleserver.DecisionLogs{}
	logService := httptest.NewServer(decisions)
	defer logService.Close()

	ns := e.namespace(t)
	require.NoError(t, e.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opa"},
		Data: map[string]string{"config.yaml": opaConfig(url, key, "{min_delay_seconds: 1, max_delay_seconds: 1}", logService.URL)}}))

	bin := governorBinary(t)
	probe, metrics := freeAddr(t), freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--opa-config-map", ns+"/opa", "--kubeconfig", e.api.Kubeconfig, "--leader-elect=false",
		"--health-probe-bind-address", probe, "--metrics-bind-address", metrics, "--push-bind-address", "0",
		"--metrics-secure=false") // TestMetricsAuth is about the endpoint's security
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})
	get := func(path string) (int, string) {
		code, body := httpGet(t, "http://"+metrics+path)
		if path == "/readyz" {
			code, body = httpGet(t, "http://"+probe+path)
		}
		return code, body
	}

	// Nothing published yet: not ready, and the loops say why they wait.
	loops := []string{"a", "b", "c"}
	for _, name := range loops {
		e.loop(t, ns, name, fleetSpec(""))
	}
	e.loop(t, ns, "pinned", fleetSpec("2"))
	eventually(t, 20*time.Second, func() (bool, string) {
		code, body := get("/readyz")
		return code == 500 && strings.Contains(body, "[-]bundles failed"), fmt.Sprintf("readyz %d %s", code, body)
	})
	eventually(t, 20*time.Second, func() (bool, string) {
		c := meta.FindStatusCondition(e.get(t, ns, "a").Status.Conditions, v1alpha1.ConditionPolicyReady)
		return c != nil && c.Reason == "NoRevision" && strings.Contains(c.Message, "no active revision"), fmt.Sprint(c)
	})

	// Revision 2: every loop decides with it.
	publishFile(t, root, "fleet.tar.gz", fleetTarball(t, "2", good, key))
	for _, name := range append(loops, "pinned") {
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, ns, name)
			h, desc := lastEntry(l)
			return l.Status.PolicyRevision == "fleet@2" && h.Revision == "fleet@2" && h.Error == "", name + ": " + desc
		})
	}
	l := e.get(t, ns, "a")
	healthy := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
	require.NotNil(t, healthy)
	assert.Equal(t, metav1.ConditionTrue, healthy.Status)
	require.NotNil(t, l.Status.Bundle)
	assert.Equal(t, url+"/fleet.tar.gz", l.Status.Bundle.Source)
	assert.NotNil(t, l.Status.Bundle.LastActivation)
	eventually(t, 10*time.Second, func() (bool, string) {
		code, body := get("/readyz")
		return code == 200, fmt.Sprintf("readyz %d %s", code, body)
	})

	// Each bad revision is refused at its step; revision 2 keeps deciding.
	for _, bad := range []struct {
		name, step string
		tarball    []byte
	}{
		{"a compile error", "refused at compile", fleetTarball(t, "4", compileErr, key)},
		{"a failing test", "refused at test: 1 of the bundle's tests failed: data.fleet.test_decision", fleetTarball(t, "5", failingTest, key)},
		{"a bad signature", "refused at verify", fleetTarball(t, "6", good, other)},
		{"no rule for the loops' decision", "refused at prepare", fleetTarball(t, "7", renamed, key)},
	} {
		before := e.get(t, ns, "a").Status.Tick
		publishFile(t, root, "fleet.tar.gz", bad.tarball)
		for _, name := range loops {
			eventually(t, 30*time.Second, func() (bool, string) {
				l := e.get(t, ns, name)
				c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "RevisionRefused" &&
						strings.Contains(c.Message, bad.step) && strings.Contains(c.Message, "(deciding with: fleet@2)") &&
						l.Status.Bundle != nil && strings.Contains(l.Status.Bundle.LastError, bad.step),
					fmt.Sprintf("%s, loop %s: %v", bad.name, name, c)
			})
		}
		eventually(t, 10*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			h, desc := lastEntry(l)
			return l.Status.Tick > before+2 && h.Revision == "fleet@2" && l.Status.Phase == v1alpha1.PhaseRunning,
				fmt.Sprintf("%s: loops must keep deciding with fleet@2: tick %d (was %d) %s", bad.name, l.Status.Tick, before, desc)
		})
	}

	// Revision 3 goes live; the pinned loop stays on 2.
	publishFile(t, root, "fleet.tar.gz", fleetTarball(t, "3", good, key))
	for _, name := range loops {
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, ns, name)
			h, desc := lastEntry(l)
			c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
			return h.Revision == "fleet@3" && c != nil && c.Status == metav1.ConditionTrue, name + ": " + desc
		})
	}
	pinned := e.get(t, ns, "pinned")
	h, desc := lastEntry(pinned)
	assert.Equal(t, "fleet@2", h.Revision, desc)
	assert.Equal(t, "fleet@3", pinned.Status.Bundle.ActiveRevision)

	// Per-bundle status and metrics.
	code, body := get("/bundles")
	require.Equal(t, 200, code)
	var statuses []v1alpha1.BundleStatus
	require.NoError(t, json.Unmarshal([]byte(body), &statuses), body)
	require.Len(t, statuses, 1)
	assert.Equal(t, "fleet@3", statuses[0].ActiveRevision)
	assert.Empty(t, statuses[0].LastError)
	_, body = get("/metrics")
	for _, want := range []string{
		`governor_bundle_activations_total{bundle="fleet"} 2`,
		`governor_bundle_refusals_total{bundle="fleet",step="compile"} 1`,
		`governor_bundle_refusals_total{bundle="fleet",step="test"} 1`,
		`governor_bundle_refusals_total{bundle="fleet",step="verify"} 1`,
		`governor_bundle_refusals_total{bundle="fleet",step="prepare"} 1`,
		`governor_bundle_active_revision{bundle="fleet",revision="3"} 1`,
	} {
		assert.Contains(t, body, "\n"+want+"\n") // whole lines: "1" must not match "12"
	}
	assert.NotContains(t, body, `governor_bundle_active_revision{bundle="fleet",revision="2"}`)

	// Every decision went to the decision log service, as OPA logs them.
	eventually(t, 10*time.Second, func() (bool, string) {
		revs := map[string]bool{}
		for _, ev := range decisions.Events() {
			custom, _ := ev["custom"].(map[string]any)
			if custom["loop"] == ns+"/a" && ev["path"] == "fleet/decision" {
				fleet, _ := ev["bundles"].(map[string]any)["fleet"].(map[string]any)
				revs[fmt.Sprint(fleet["revision"])] = true
			}
		}
		return revs["2"] && revs["3"], fmt.Sprintf("revisions logged for loop a: %v", revs)
	})
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}
