//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
	"governor.dev/governor/test/deployed"
	"governor.dev/governor/test/testkeys"
)

// Variants of the fleet bundle a test publishes.
const (
	good        = "good"
	compileErr  = "compile-error"
	failingTest = "failing-test"
	renamed     = "renamed"  // compiles and passes its tests, but has no fleet/decision
	unsigned    = "unsigned" // good, but not signed
)

// fleetMask is the fleet bundle's decision log mask: the loops' params
// (echoSpec's decision) never reach the decision log service.
const fleetMask = `package system.log

mask contains "/input/params/decision"
`

// fleetTarball is revision rev of the "fleet" bundle, signed with k, as
// `opa build --signing-key` writes it (but the unsigned variant). Its
// decision is {} (no action); a compile-error variant calls a function
// that does not exist, and a failing-test variant has a test that fails.
// It masks the loops' params in the decision log (fleetMask).
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
		".manifest":       fmt.Sprintf(`{"revision": %q, "roots": ["fleet", "system/log"]}`, rev),
		"fleet.rego":      "package fleet\n\n" + rule + " := " + decision + "\n",
		"fleet_test.rego": "package fleet\n\ntest_decision if count(" + rule + ") == " + want + "\n",
		"mask.rego":       fleetMask,
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	b, err := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).AsBundle(dir)
	require.NoError(t, err)
	if variant != unsigned {
		require.NoError(t, b.GenerateSignature(bundle.NewSigningConfig(k.Private, "RS256", ""), "release", false))
	}
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

// service is an https:// service of an OPA configuration: its URL and the
// file of the CA certificate that verifies it.
type service struct{ url, caCert string }

// yaml is the service's entry under services.
func (s service) yaml(name string) string {
	return fmt.Sprintf("  %s:\n    url: %s\n    tls: {ca_cert: %q}\n", name, s.url, s.caCert)
}

// opaConfig follows the fleet bundle on bundles, signed with k's key
// "release", and when logs is not nil sends decision logs there.
func opaConfig(bundles service, k testkeys.Pair, polling string, logs *service) string {
	cfg := fmt.Sprintf(`services:
%sbundles:
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
`, bundles.yaml("bundles"), polling, strings.ReplaceAll(strings.TrimSpace(k.Public), "\n", "\n      "))
	if logs != nil {
		cfg = strings.Replace(cfg, "services:\n", "services:\n"+logs.yaml("logs"), 1) +
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
// revision 3 goes live. A loop pinned to revision 2 stays on it. Bundles
// and decision logs travel over HTTPS. An unsigned revision is refused like
// a bad signature. Decisions go to a decision log service, masked by the
// bundle's system.log.mask.
func TestBundleDistribution(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	key, other := testkeys.RSA(t), testkeys.RSA(t)
	root := t.TempDir()
	url, ca := bundleserver.StartNginxTLS(t, root)

	decisions := &bundleserver.DecisionLogs{}
	logsURL, logsCA := bundleserver.ServeTLS(t, decisions)

	ns := e.namespace(t)
	require.NoError(t, e.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opa"},
		Data: map[string]string{"config.yaml": opaConfig(service{url, ca}, key, "{min_delay_seconds: 1, max_delay_seconds: 1}", &service{logsURL, logsCA})}}))

	bin := governorBinary(t)
	probe, metrics := deployed.FreeAddr(t), deployed.FreeAddr(t)
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
		{"no signature", "refused at verify", fleetTarball(t, "8", unsigned, key)},
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
	// The pinned loop's status says fleet@3 is active once a tick of its
	// own after 3 went live is written (a quiet tick waits for the flush).
	eventually(t, 10*time.Second, func() (bool, string) {
		pinned := e.get(t, ns, "pinned")
		h, desc := lastEntry(pinned)
		return h.Revision == "fleet@2" && pinned.Status.Bundle != nil && pinned.Status.Bundle.ActiveRevision == "fleet@3",
			"pinned: must decide with fleet@2 and see fleet@3 active: " + desc
	})
	pinned := e.get(t, ns, "pinned")
	h, desc := lastEntry(pinned)
	assert.Equal(t, "fleet@2", h.Revision, desc)

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
		`governor_bundle_refusals_total{bundle="fleet",step="verify"} 2`,
		`governor_bundle_refusals_total{bundle="fleet",step="prepare"} 1`,
		`governor_bundle_active_revision{bundle="fleet",revision="3"} 1`,
	} {
		assert.Contains(t, body, "\n"+want+"\n") // whole lines: "1" must not match "12"
	}
	assert.NotContains(t, body, `governor_bundle_active_revision{bundle="fleet",revision="2"}`)

	// Every decision went to the decision log service, as OPA logs them,
	// with the loop's params masked.
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
	for _, ev := range decisions.Events() {
		input, _ := ev["input"].(map[string]any)
		require.NotNil(t, input, "%v", ev)
		assert.Equal(t, map[string]any{}, input["params"], "the mask erases the params' decision")
		assert.Equal(t, []any{"/input/params/decision"}, ev["erased"])
	}
}

// TestGovernorRunFollowsUnsignedBundlesOnlyWhenAllowed: with no keys
// configured, governor run refuses to start in one line naming
// --allow-unsigned-bundles; with the flag, it follows an unsigned bundle.
func TestGovernorRunFollowsUnsignedBundlesOnlyWhenAllowed(t *testing.T) {
	e := newEnv(t)
	srv := bundleserver.New()
	srv.Publish("fleet.tar.gz", fleetTarball(t, "1", unsigned, testkeys.Pair{}))
	url, ca := srv.StartTLS(t)
	config := filepath.Join(t.TempDir(), "opa.yaml")
	require.NoError(t, os.WriteFile(config, []byte("services:\n"+service{url, ca}.yaml("bundles")+
		"bundles: {fleet: {service: bundles, resource: fleet.tar.gz, polling: {min_delay_seconds: 1, max_delay_seconds: 1}}}\n"), 0o644))
	bin := governorBinary(t)
	args := []string{"run", "--opa-config", config, "--kubeconfig", e.api.Kubeconfig, "--leader-elect=false", "--push-bind-address", "0"}

	out, err := exec.Command(bin, append(args, "--health-probe-bind-address", deployed.FreeAddr(t), "--metrics-bind-address", "0")...).CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf("governor: OPA configuration %s: bundle \"fleet\" (%s/fleet.tar.gz): no key to verify its signature: configure keys (and signing), or pass --allow-unsigned-bundles to follow it unsigned\n", config, url), string(out))

	metrics := deployed.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, append(args, "--allow-unsigned-bundles", "--health-probe-bind-address", deployed.FreeAddr(t), "--metrics-bind-address", metrics, "--metrics-secure=false")...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		code, body := httpGet(t, "http://"+metrics+"/bundles")
		return code == 200 && strings.Contains(body, `"activeRevision":"fleet@1"`), fmt.Sprintf("/bundles %d %s", code, body)
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
