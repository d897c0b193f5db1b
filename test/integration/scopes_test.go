//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/testkeys"
)

// TestNamespacedDeployment applies config/namespaced to a real API server
// and runs the governor binary as its ServiceAccount, whose rights are a
// RoleBinding in the watched namespace (factory) and leader election's Role:
// a loop in factory ticks, is woken by a push and scales its Deployment; a
// loop in another namespace is neither ticked nor written, and its pushes
// get a stranger's answer; loops whose collectors reach outside the
// operator's scope, or that name a rule their bundle does not declare as an
// entrypoint, say so in their conditions and decide nothing; and governor's
// log has no "forbidden" in it.
func TestNamespacedDeployment(t *testing.T) {
	api := cluster.StartAPIServer(t)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := api.Kubectl(args...)
		require.NoError(t, err, out)
		return out
	}
	const watched, other = "factory", "elsewhere"
	kubectl("create", "namespace", watched)
	kubectl("create", "namespace", other)
	overlay := filepath.Join(repo, "config/namespaced")
	out := kubectl("apply", "--server-side", "-k", overlay)
	assert.Contains(t, out, "rolebinding.rbac.authorization.k8s.io/governor-manager-rolebinding serverside-applied")
	// No right outside the watched namespaces but the metrics endpoint's
	// TokenReviews and SubjectAccessReviews, which are cluster-scoped.
	assert.Equal(t, []string{"clusterrolebinding.rbac.authorization.k8s.io/governor-metrics-auth-rolebinding serverside-applied"},
		slices.DeleteFunc(strings.Split(out, "\n"), func(l string) bool { return !strings.Contains(l, "clusterrolebinding") }))
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/controlloops.governor.dev")
	watchFlag := managerArg(t, kubectl("kustomize", overlay), "--watch-namespaces=")
	require.Equal(t, "--watch-namespaces="+watched, watchFlag)

	ctx := context.Background()
	c, err := client.New(api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	e := &env{api: api, c: c}
	loop := func(ns, name string, change func(*v1alpha1.ControlLoopSpec)) {
		spec := scalingByPush()
		if change != nil {
			change(&spec)
		}
		e.loop(t, ns, name, spec)
	}
	for _, ns := range []string{watched, other} {
		e.deployment(t, ns, "web", 2)
		require.NoError(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reporter"},
			StringData: map[string]string{"token": "s3cret"}}))
		loop(ns, "scaling", nil)
	}
	// Out of the operator's scope (no --observe-namespaces, no
	// --prometheus-namespaces), and a rule that is not an entrypoint.
	loop(watched, "peeking", func(s *v1alpha1.ControlLoopSpec) {
		s.Collectors = append(s.Collectors, v1alpha1.CollectorSpec{Name: "jitter",
			Hubble: &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Namespace: other, Workload: "web"}}})
	})
	loop(watched, "querying", func(s *v1alpha1.ControlLoopSpec) {
		s.Collectors = append(s.Collectors, v1alpha1.CollectorSpec{Name: "p95",
			Prometheus: &v1alpha1.PrometheusCollector{Query: `up{namespace="elsewhere"}`}})
	})
	loop(watched, "helping", func(s *v1alpha1.ControlLoopSpec) { s.Policy.Decision = "governor/reactive/violations" })
	// A followed bundle that declares no entrypoints: the gate lists the
	// loops' decision paths, in the watched namespace.
	key := testkeys.RSA(t)
	root := t.TempDir()
	opa := filepath.Join(t.TempDir(), "opa.yaml")
	url, ca := bundleserver.StartNginxTLS(t, root)
	require.NoError(t, os.WriteFile(opa, []byte(opaConfig(service{url, ca}, key, "{min_delay_seconds: 1, max_delay_seconds: 1}", nil)), 0o644))
	publishFile(t, root, "fleet.tar.gz", fleetTarball(t, "2", good, key))
	e.loop(t, watched, "fleet", fleetSpec(""))

	g := startAsServiceAccount(t, api.Config.Host, api.Config.CAData, serviceAccountToken(t, e),
		watchFlag, "--leader-elect", "--leader-election-namespace=governor-system", "--opa-config", opa)

	eventually(t, 60*time.Second, func() (bool, string) {
		l := e.get(t, watched, "scaling")
		return l.Status.Tick >= 2 && l.Status.PolicyRevision == "reactive@reactive-4", fmt.Sprintf("tick %d %q", l.Status.Tick, l.Status.PolicyRevision)
	})
	var lease coordinationv1.Lease
	require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: "governor-system", Name: controller.LeaderElectionID}, &lease))
	require.NotNil(t, lease.Spec.HolderIdentity)

	// A push wakes the watched loop, which scales its Deployment.
	assert.Equal(t, http.StatusNoContent, g.push(t, watched, "scaling", "s3cret", `{"cpu": 95}`))
	eventually(t, 30*time.Second, func() (bool, string) {
		var d appsv1.Deployment
		require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: watched, Name: "web"}, &d))
		_, desc := lastEntry(e.get(t, watched, "scaling"))
		return *d.Spec.Replicas == 3, fmt.Sprintf("replicas %d; last tick %s", *d.Spec.Replicas, desc)
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		return len(e.events(t, watched, "scaling")) > 0, "no Event about the loop"
	})

	// Out of scope: the tick fails before collecting or deciding.
	for name, want := range map[string]string{
		"peeking":  "collector jitter: hubble destination namespace elsewhere is outside what loops in factory may observe (factory; governor run --observe-namespaces adds others)",
		"querying": "collector p95: prometheus queries are not allowed to loops in namespace factory",
	} {
		eventually(t, 20*time.Second, func() (bool, string) {
			l := e.get(t, watched, name)
			ready := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionReady)
			return ready != nil && ready.Reason == "CollectorOutOfScope" && strings.HasPrefix(ready.Message, want) && l.Status.Phase == v1alpha1.PhaseDegraded,
				fmt.Sprintf("%s: %+v", name, ready)
		})
		for _, h := range e.get(t, watched, name).Status.History {
			assert.True(t, strings.HasPrefix(h.Error, want) && len(h.Actions) == 0 && len(h.Events) == 0,
				"%s decided nothing: %+v", name, h)
		}
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		l := e.get(t, watched, "helping")
		policy := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionPolicyReady)
		return policy != nil && policy.Reason == "NotAnEntrypoint" &&
				policy.Message == "decision governor/reactive/violations is not an entrypoint of reactive@reactive-4 (its entrypoints: governor/reactive/decision)",
			fmt.Sprintf("%+v", policy)
	})

	// A revision without the fleet loop's rule is refused, one with it goes
	// live: the loops were listed with the namespace's rights.
	fleetAt := func(rev string) {
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, watched, "fleet")
			h, desc := lastEntry(l)
			return h.Revision == rev && h.Error == "", desc
		})
	}
	fleetAt("fleet@2")
	publishFile(t, root, "fleet.tar.gz", fleetTarball(t, "3", renamed, key))
	eventually(t, 30*time.Second, func() (bool, string) {
		healthy := meta.FindStatusCondition(e.get(t, watched, "fleet").Status.Conditions, v1alpha1.ConditionBundleHealthy)
		return healthy != nil && healthy.Reason == "RevisionRefused" && strings.Contains(healthy.Message, "refused at prepare"), fmt.Sprintf("%+v", healthy)
	})
	publishFile(t, root, "fleet.tar.gz", fleetTarball(t, "4", good, key))
	fleetAt("fleet@4")

	// The loop of the other namespace: not ticked, not written, and its
	// pushes answered as for a loop that does not exist.
	assert.Equal(t, http.StatusForbidden, g.push(t, other, "scaling", "s3cret", `{"cpu": 95}`))
	assert.Equal(t, http.StatusForbidden, g.push(t, watched, "no-such-loop", "s3cret", `{"cpu": 95}`))
	stranger := e.get(t, other, "scaling")
	assert.Zero(t, stranger.Status.Tick)
	assert.Empty(t, stranger.Status.History)
	assert.Empty(t, stranger.Status.Conditions)
	assert.Empty(t, stranger.Status.Observations)
	var d appsv1.Deployment
	require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: other, Name: "web"}, &d))
	assert.Equal(t, int32(2), *d.Spec.Replicas)

	log := g.stop(t)
	assert.NotContains(t, strings.ToLower(log), "forbidden", "governor's log:\n%s", log)
}

// scalingByPush is a loop on the shipped reactive bundle: one replica more
// when the pushed cpu is above 80.
func scalingByPush() v1alpha1.ControlLoopSpec {
	web := deploymentTarget("web", "web")
	web.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10}
	return v1alpha1.ControlLoopSpec{
		Kind:     v1alpha1.Reactive,
		State:    v1alpha1.Running,
		Interval: metav1.Duration{Duration: 500 * time.Millisecond},
		Policy: v1alpha1.PolicySpec{Bundle: "reactive", Decision: "governor/reactive/decision",
			Params: &apiextensionsv1.JSON{Raw: []byte(`{"monitor": {"cpu": {"kind": "superior", "threshold": 80}}, "priorities": ["cpu"],
				"remedies": {"cpu": {"target": "web", "scale": "replicas", "step": 1}}}`)}},
		Collectors: []v1alpha1.CollectorSpec{{Name: "cpu", Push: &v1alpha1.PushCollector{TokenSecret: "reporter"}}},
		Targets:    []v1alpha1.TargetSpec{web},
		Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: time.Hour},
			StaleAfter: metav1.Duration{Duration: time.Minute}, MaxActions: 5},
	}
}

// managerArg is the manager container's argument with the given prefix in
// a rendered kustomization.
func managerArg(t *testing.T, rendered, prefix string) string {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rendered)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var d appsv1.Deployment
		if yaml.Unmarshal(doc, &d) != nil || d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, a := range c.Args {
				if strings.HasPrefix(a, prefix) {
					return a
				}
			}
		}
	}
	t.Fatalf("the rendered Deployment has no argument %s...", prefix)
	return ""
}

// serviceAccountToken mints a token of the controller's ServiceAccount
// (TokenRequest, as the kubelet does for a Pod).
func serviceAccountToken(t *testing.T, e *env) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.api.Config)
	require.NoError(t, err)
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts("governor-system").CreateToken(context.Background(), "governor-controller-manager",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// saGovernor is the governor binary running as the ServiceAccount.
type saGovernor struct {
	cmd      *exec.Cmd
	logs     *bytes.Buffer
	pushAddr string
	exited   chan error
}

// startAsServiceAccount runs governor run with the shipped policies and a
// kubeconfig holding token, plus args; it waits until the binary is ready.
func startAsServiceAccount(t *testing.T, host string, ca []byte, token string, args ...string) *saGovernor {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: ca}
	cfg.AuthInfos["governor"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["governor"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "governor", Namespace: "governor-system"}
	cfg.CurrentContext = "governor"
	kubeconfig := filepath.Join(t.TempDir(), "governor.kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, kubeconfig))

	probe := freeAddr(t)
	g := &saGovernor{logs: &bytes.Buffer{}, pushAddr: freeAddr(t), exited: make(chan error, 1)}
	g.cmd = exec.Command(governorBinary(t), append([]string{"run", "--bundles", filepath.Join(repo, "policies"), "--kubeconfig", kubeconfig,
		"--health-probe-bind-address", probe, "--metrics-bind-address", "0", "--push-bind-address", g.pushAddr}, args...)...)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	require.NoError(t, g.cmd.Start())
	go func() { g.exited <- g.cmd.Wait() }()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("governor run output:\n%s", g.logs.String())
		}
	})
	eventually(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return g
}

// push posts a body to a loop's push endpoint and returns the status.
func (g *saGovernor) push(t *testing.T, ns, loop, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+g.pushAddr+"/v1/loops/"+ns+"/"+loop+"/observations", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// stop stops governor with SIGTERM, as a Pod is stopped, and returns its log.
func (g *saGovernor) stop(t *testing.T) string {
	t.Helper()
	require.NoError(t, g.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-g.exited:
		require.NoError(t, err, g.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("governor run did not stop on SIGTERM")
	}
	return g.logs.String()
}
