//go:build integration && linux

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
	"governor.dev/governor/test/testkeys"
)

// TestNamespacedDeployment applies config/namespaced to a real API server
// and runs the governor binary as it deploys it (test/deployed: its flags,
// as its ServiceAccount), whose rights are a RoleBinding in the watched
// namespace (factory) and leader election's Role:
// a loop in factory ticks, is woken by a push and scales its Deployment; a
// loop in another namespace is neither ticked nor written, and its pushes
// get a stranger's answer; loops whose collectors reach outside the
// operator's scope, or that name a rule their bundle does not declare as an
// entrypoint, say so in their conditions and decide nothing; and governor's
// log has no "forbidden" in it.
func TestNamespacedDeployment(t *testing.T) {
	api := cluster.StartAPIServer(t)
	const watched, other = "factory", "elsewhere"
	for _, ns := range []string{watched, other} {
		out, err := api.Kubectl("create", "namespace", ns)
		require.NoError(t, err, out)
	}
	d := deployed.DeployConfigOn(t, governorBinary(t), api, "config/namespaced")
	assert.Contains(t, d.Applied, "rolebinding.rbac.authorization.k8s.io/governor-manager-rolebinding serverside-applied")
	// No right outside the watched namespaces but the metrics endpoint's
	// TokenReviews and SubjectAccessReviews, which are cluster-scoped.
	assert.Equal(t, []string{"clusterrolebinding.rbac.authorization.k8s.io/governor-metrics-auth-rolebinding serverside-applied"},
		slices.DeleteFunc(strings.Split(d.Applied, "\n"), func(l string) bool { return !strings.Contains(l, "clusterrolebinding") }))
	watching, _ := deployed.ArgValue(d.Args, "--watch-namespaces")
	require.Equal(t, watched, watching)

	ctx := context.Background()
	c := d.Admin
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

	g := d.Start(t, "--opa-config="+opa)
	g.WaitRunning(t, d)

	eventually(t, 60*time.Second, func() (bool, string) {
		l := e.get(t, watched, "scaling")
		return l.Status.Tick >= 2 && l.Status.PolicyRevision == "reactive@reactive-4", fmt.Sprintf("tick %d %q", l.Status.Tick, l.Status.PolicyRevision)
	})

	// A push wakes the watched loop, which scales its Deployment.
	require.NoError(t, g.Push(watched, "scaling", "s3cret", map[string]float64{"cpu": 95}))
	eventually(t, 30*time.Second, func() (bool, string) {
		var web appsv1.Deployment
		require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: watched, Name: "web"}, &web))
		_, desc := lastEntry(e.get(t, watched, "scaling"))
		return *web.Spec.Replicas == 3, fmt.Sprintf("replicas %d; last tick %s", *web.Spec.Replicas, desc)
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
	assert.ErrorContains(t, g.Push(other, "scaling", "s3cret", map[string]float64{"cpu": 95}), "403 Forbidden")
	assert.ErrorContains(t, g.Push(watched, "no-such-loop", "s3cret", map[string]float64{"cpu": 95}), "403 Forbidden")
	stranger := e.get(t, other, "scaling")
	assert.Zero(t, stranger.Status.Tick)
	assert.Empty(t, stranger.Status.History)
	assert.Empty(t, stranger.Status.Conditions)
	assert.Empty(t, stranger.Status.Observations)
	var web appsv1.Deployment
	require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: other, Name: "web"}, &web))
	assert.Equal(t, int32(2), *web.Spec.Replicas)

	require.NoError(t, g.Terminate(), "SIGTERM, as a Pod is stopped")
	log := g.Output()
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
