//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/deployed"
)

// TestGovernorRun runs the governor binary as an operator would, against a
// real API server: leader election, health probes, metrics, loops ticking,
// and a clean stop that hands the Lease back.
func TestGovernorRun(t *testing.T) {
	e := newEnv(t)
	bin := governorBinary(t)

	probe, metrics, pushAddr := deployed.FreeAddr(t), deployed.FreeAddr(t), deployed.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--bundles", filepath.Join(repo, "policies"), "--kubeconfig", e.api.Kubeconfig,
		"--leader-elect", "--leader-election-namespace", "default",
		"--health-probe-bind-address", probe, "--metrics-bind-address", metrics, "--push-bind-address", pushAddr,
		"--metrics-secure=false") // TestMetricsAuth is about the endpoint's security
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, 20*time.Second, func() (bool, string) {
			code, body := get("http://" + probe + path)
			return code == http.StatusOK, fmt.Sprintf("%s: %d %s", path, code, body)
		})
	}

	ctx := context.Background()
	var lease coordinationv1.Lease
	eventually(t, 20*time.Second, func() (bool, string) {
		err := e.c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controller.LeaderElectionID}, &lease)
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", fmt.Sprint(err)
	})

	// A loop on a shipped bundle ticks under the elected leader.
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 2)
	web := deploymentTarget("web", "web")
	web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
	spec := echoSpec(`{}`, web)
	spec.Policy.Bundle, spec.Policy.Decision = "reactive", "governor/reactive/decision"
	spec.Collectors = []v1alpha1.CollectorSpec{{Name: "queue", Push: &v1alpha1.PushCollector{TokenSecret: "reporter"}}}
	require.NoError(t, e.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reporter"},
		StringData: map[string]string{"token": "s3cret"}}))
	e.loop(t, ns, "scaling", spec)
	eventually(t, 20*time.Second, func() (bool, string) {
		l := e.get(t, ns, "scaling")
		return l.Status.Tick >= 2 && l.Status.PolicyRevision == "reactive@reactive-4", fmt.Sprintf("tick %d %s", l.Status.Tick, l.Status.PolicyRevision)
	})

	// The managed system reports through the push endpoint.
	push := func(token, body string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+pushAddr+"/v1/loops/"+ns+"/scaling/observations", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusForbidden, push("wrong", `{"queue": 12}`))
	assert.Equal(t, http.StatusNoContent, push("s3cret", `{"queue": 12}`))
	l := e.get(t, ns, "scaling")
	require.Contains(t, l.Status.Observations, "queue")
	v := l.Status.Observations["queue"].Value
	assert.Equal(t, "12", v.String())

	code, body := get("http://" + metrics + "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `controller_runtime_reconcile_total{controller="controlloop"`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("governor run did not stop on SIGTERM")
	}
	require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controller.LeaderElectionID}, &lease))
	assert.True(t, lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "", "the Lease is handed back on a clean stop")
	assert.Contains(t, logs.String(), `"bundles":["bandwidth","deliberative","reactive"]`)
}

func TestGovernorRunRefusesBadBundles(t *testing.T) {
	bin := governorBinary(t)
	dir := t.TempDir()
	config := func(body string) string {
		p := filepath.Join(dir, fmt.Sprintf("opa-%d.yaml", len(body)))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	fetching := filepath.Join(t.TempDir(), "fetching")
	require.NoError(t, os.MkdirAll(fetching, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fetching, "f.rego"), []byte("package f\n\ndecision := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"})\n"), 0o644))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundles", t.TempDir()}, "governor: no bundles in"},
		{nil, "no bundles: give --bundles, --opa-config or --opa-config-map"},
		{[]string{"--opa-config", "a.yaml", "--opa-config-map", "ns/cm"}, "not both"},
		{[]string{"--opa-config", filepath.Join(dir, "missing.yaml")}, "reading OPA configuration: open"},
		{[]string{"--opa-config", config("discovery: {resource: x}\nbundles: {b: {}}\n")}, `"discovery" is not supported by governor`},
		{[]string{"--opa-config", config("bundles: {b: {service: nope}}\n")}, `service name "nope" not found`},
		{[]string{"--opa-config-map", "no-slash"}, "want NAMESPACE/NAME"},
		{[]string{"--bundles", filepath.Join(repo, "policies"), "--leader-elect-renew-deadline", "9s"},
			"--leader-elect-renew-deadline (9s) must be below --leader-elect-lease-duration (8s)"},
		{[]string{"--bundles", filepath.Join(repo, "policies"), "--opa-config", config("bundles: {reactive: {resource: \"file:///nowhere\"}}\n")},
			"bundle reactive is configured twice"},
		{[]string{"--bundles", filepath.Dir(fetching)}, "f.rego:3: builtin_refused: http.send reaches outside the controller and is refused (governor run --allow-builtin http.send allows it)"},
		{[]string{"--bundles", filepath.Join(repo, "policies"), "--allow-builtin", "time.now_ns"}, "--allow-builtin time.now_ns: not a builtin governor refuses"},
		{[]string{"--bundles", filepath.Join(repo, "policies"), "--max-decision-timeout", "0s"}, "--max-decision-timeout must be above 0"},
		{[]string{"--bundles", filepath.Join(repo, "policies"), "--max-status-bytes", "1000"}, "--max-status-bytes (1000) must be at least twice --max-decision-state-bytes (65536)"},
		{[]string{"--opa-config", config("decision_logs: {console: true, reporting: {buffer_type: event}}\n")}, "reporting.buffer_type event is not supported"},
		{[]string{"--opa-config", config("services: {s: {url: \"https://127.0.0.1:1\"}}\nbundles: {b: {service: s}}\n")},
			`bundle "b" (https://127.0.0.1:1/bundles/b): no key to verify its signature: configure keys (and signing), or pass --allow-unsigned-bundles to follow it unsigned`},
		{[]string{"--allow-unsigned-bundles", "--opa-config", config("services: {s: {url: \"http://127.0.0.1:1\"}}\nbundles: {b: {service: s}}\n")},
			`service "s" (http://127.0.0.1:1) is not https://: bundles and decision logs would travel in clear; pass --allow-insecure-bundle-services to allow it`},
	} {
		res, err := exec.Command(bin, append([]string{"run", "--kubeconfig", "/nonexistent"}, c.args...)...).CombinedOutput()
		require.Error(t, err, "%v", c.args)
		assert.Contains(t, string(res), c.want, "%v", c.args)
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(string(res)), "\n")+1, "one line: %s", res)
	}
}
