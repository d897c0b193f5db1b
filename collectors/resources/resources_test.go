//go:build integration

package resources_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/collectors/resources"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

var crds = filepath.Join("..", "..", "config", "crd", "bases")

// env is a real kube-apiserver and etcd, an admin client, and the metrics API test server.
type env struct {
	*cluster.APIServer
	c       client.Client
	metrics *metricsAPI
}

func start(t *testing.T) *env {
	t.Helper()
	s := cluster.StartAPIServer(t, crds)
	c, err := client.New(s.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	return &env{APIServer: s, c: c, metrics: startMetricsAPI(t)}
}

var nsSeq atomic.Int64

func (e *env) namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("r%d", nsSeq.Add(1))}}
	require.NoError(t, e.c.Create(context.Background(), ns))
	return ns.Name
}

func (e *env) create(t *testing.T, obj client.Object) {
	t.Helper()
	require.NoError(t, e.c.Create(context.Background(), obj), "create %T %s", obj, obj.GetName())
}

func requests(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func container(name string, req corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Image: "registry.example/" + name + ":1", Resources: corev1.ResourceRequirements{Requests: req}}
}

func deployment(ns, name string, containers ...corev1.Container) *appsv1.Deployment {
	l := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: corev1.PodSpec{Containers: containers}},
		},
	}
}

func pod(ns, name, app string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app, "pod": name}},
		Spec:       corev1.PodSpec{Containers: containers},
	}
}

func loopWith(ns string, targets ...v1alpha1.TargetSpec) *v1alpha1.ControlLoop {
	return &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loop"}, Spec: v1alpha1.ControlLoopSpec{Targets: targets}}
}

func target(name string, kind v1alpha1.TargetKind, workload string) v1alpha1.TargetSpec {
	return v1alpha1.TargetSpec{Name: name, Ref: v1alpha1.TargetRef{Kind: kind, Name: workload}}
}

func usageOf(target string, res v1alpha1.ResourceName) *v1alpha1.CollectorSpec {
	return &v1alpha1.CollectorSpec{Name: "usage", Resources: &v1alpha1.ResourcesCollector{Target: target, Resource: res}}
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// TestCollect runs the collector against workloads and Pods in a real API server and
// PodMetrics from the metrics API test server.
func TestCollect(t *testing.T) {
	e := start(t)
	ns, other := e.namespace(t), e.namespace(t)
	now := time.Now().Truncate(time.Second)
	app := func(cpu, mem string) corev1.Container { return container("app", requests("cpu", cpu, "memory", mem)) }
	side := func(cpu, mem string) corev1.Container { return container("proxy", requests("cpu", cpu, "memory", mem)) }

	// web: template app 250m/128Mi + proxy 50m/32Mi. web-a runs the template; web-b was made
	// by an older template (app 500m/256Mi); web-c has metrics but is not (yet) known to the
	// API server (its requests come from the template); web-d has no metrics yet; web-e has
	// failed.
	e.create(t, deployment(ns, "web", app("250m", "128Mi"), side("50m", "32Mi")))
	e.create(t, pod(ns, "web-a", "web", app("250m", "128Mi"), side("50m", "32Mi")))
	e.create(t, pod(ns, "web-b", "web", app("500m", "256Mi"), side("50m", "32Mi")))
	e.create(t, pod(ns, "web-d", "web", app("250m", "128Mi"), side("50m", "32Mi")))
	failed := pod(ns, "web-e", "web", app("250m", "128Mi"), side("50m", "32Mi"))
	e.create(t, failed)
	failed.Status.Phase = corev1.PodFailed
	require.NoError(t, e.c.Status().Update(context.Background(), failed))
	// Pods of other workloads, and a web in another namespace: their metrics must not count.
	e.create(t, pod(ns, "api-a", "api", app("100m", "64Mi")))
	e.create(t, deployment(other, "web", app("250m", "128Mi")))
	e.create(t, pod(other, "web-x", "web", app("250m", "128Mi")))

	m := e.metrics
	lbl := func(app, name string) map[string]string { return map[string]string{"app": app, "pod": name} }
	// CPU in nanocores and memory in KiB, as metrics-server reports them.
	m.add(ns, "web-a", lbl("web", "web-a"), now.Add(-3*time.Second), "app", "200000000n", "102400Ki", "proxy", "10000000n", "16384Ki")
	m.add(ns, "web-b", lbl("web", "web-b"), now.Add(-9*time.Second), "app", "290000000n", "131072Ki", "proxy", "0", "8192Ki")
	m.add(ns, "web-c", lbl("web", "web-c"), now.Add(-5*time.Second), "app", "100000000n", "65536Ki", "proxy", "0", "0")
	m.add(ns, "api-a", lbl("api", "api-a"), now.Add(-60*time.Second), "app", "4", "4Gi")
	m.add(other, "web-x", lbl("web", "web-x"), now.Add(-60*time.Second), "app", "8", "8Gi")

	loop := loopWith(ns, target("web", v1alpha1.TargetKind("Deployment"), "web"), target("db", "StatefulSet", "db"),
		target("batch", "Deployment", "batch"), target("empty", "Deployment", "empty"), target("cold", "Deployment", "cold"),
		target("ghost", "Deployment", "ghost"))
	col := resources.New(e.c, m.client(t))

	t.Run("cpu: usage of the target's pods as a percentage of their requests", func(t *testing.T) {
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("web", "cpu"), now)
		require.Empty(t, got.Err)
		require.NotNil(t, got.Value)
		// usage 0.21 + 0.29 + 0.1 = 0.6 cores; requests web-a 0.3 (pod), web-b 0.55 (pod),
		// web-c 0.3 (template) = 1.15 cores.
		assert.InDelta(t, 100*0.6/1.15, *got.Value, 1e-9)
		assert.InDelta(t, 0.6, got.Fields["usage"], 1e-9)
		assert.InDelta(t, 1.15, got.Fields["requests"], 1e-9)
		assert.Equal(t, 3, got.Fields["pods"])
		assert.Equal(t, 1, got.Fields["pods_without_metrics"])
		assert.Equal(t, []any{"web-d"}, got.Fields["missing"])
		assert.InDelta(t, 15.012, got.Fields["window_seconds"], 1e-9)
		// The oldest timestamp of the target's pods (web-b), not api-a's or web-x's.
		assert.Equal(t, now.Add(-9*time.Second).UTC(), got.ObservedAt.UTC())
		perPod := got.Fields["per_pod"].(map[string]any)
		require.Len(t, perPod, 3)
		assert.InDelta(t, 0.29, perPod["web-b"].(map[string]any)["usage"], 1e-9)
		assert.InDelta(t, 0.55, perPod["web-b"].(map[string]any)["requests"], 1e-9)
		assert.InDelta(t, 100*0.21/0.3, perPod["web-a"].(map[string]any)["percent"], 1e-9)
		// The metrics API was asked with the workload's selector, in the loop's namespace.
		assert.Equal(t, ns+"?app=web", m.lastCall())
	})

	t.Run("memory in bytes", func(t *testing.T) {
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("web", "memory"), now)
		require.Empty(t, got.Err)
		require.NotNil(t, got.Value)
		usage := float64((100+16+128+8+64)<<20) + 0
		req := float64((128 + 32 + 256 + 32 + 128 + 32) << 20)
		assert.InDelta(t, 100*usage/req, *got.Value, 1e-9)
		assert.Equal(t, usage, got.Fields["usage"])
		assert.Equal(t, req, got.Fields["requests"])
	})

	t.Run("a StatefulSet target", func(t *testing.T) {
		l := map[string]string{"app": "db"}
		e.create(t, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
			Spec: appsv1.StatefulSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: l}, ServiceName: "db",
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l}, Spec: corev1.PodSpec{Containers: []corev1.Container{container("db", requests("memory", "1Gi"))}}},
			},
		})
		e.create(t, pod(ns, "db-0", "db", container("db", requests("memory", "1Gi"))))
		m.add(ns, "db-0", lbl("db", "db-0"), now.Add(-time.Second), "db", "1m", "786432Ki")
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("db", "memory"), now)
		require.Empty(t, got.Err)
		assert.InDelta(t, 75.0, *got.Value, 1e-9)
		assert.Equal(t, 1, got.Fields["pods"])
		assert.Equal(t, now.Add(-time.Second).UTC(), got.ObservedAt.UTC())
	})

	t.Run("no requests: error, usage still reported", func(t *testing.T) {
		e.create(t, deployment(ns, "batch", container("job", nil), app("100m", "64Mi")))
		e.create(t, pod(ns, "batch-a", "batch", container("job", nil), app("100m", "64Mi")))
		m.add(ns, "batch-a", lbl("batch", "batch-a"), now, "job", "700m", "1Mi", "app", "100m", "1Mi")
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("batch", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Contains(t, got.Err, "percentage of requests undefined")
		assert.Contains(t, got.Err, "pod batch-a: no cpu request for container job")
		assert.InDelta(t, 0.8, got.Fields["usage"], 1e-9)
		assert.NotContains(t, got.Fields, "requests")
		assert.Equal(t, 1, got.Fields["pods"])
	})

	t.Run("no pods", func(t *testing.T) {
		e.create(t, deployment(ns, "empty", app("100m", "64Mi")))
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("empty", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Equal(t, "deployment "+ns+"/empty: no pods", got.Err)
	})

	t.Run("pods without any metrics", func(t *testing.T) {
		e.create(t, deployment(ns, "cold", app("100m", "64Mi")))
		e.create(t, pod(ns, "cold-a", "cold", app("100m", "64Mi")))
		e.create(t, pod(ns, "cold-b", "cold", app("100m", "64Mi")))
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("cold", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Equal(t, "deployment "+ns+"/cold: no metrics for any of its 2 pods in metrics.k8s.io", got.Err)
		assert.Equal(t, 2, got.Fields["pods_without_metrics"])
	})

	t.Run("unknown target names the loop's targets", func(t *testing.T) {
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("nope", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Equal(t, `unknown target "nope": the loop's targets are web, db, batch, empty, cold, ghost`, got.Err)
		got = col.Collect(ctx(t, 10*time.Second), loopWith(ns), usageOf("nope", "cpu"), now)
		assert.Equal(t, `unknown target "nope": the loop has no targets`, got.Err)
	})

	t.Run("workload not found", func(t *testing.T) {
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("ghost", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Equal(t, "deployment "+ns+"/ghost: not found", got.Err)
	})

	t.Run("metrics API unavailable (503 from the aggregator)", func(t *testing.T) {
		m.setMode("down")
		defer m.setMode("")
		got := col.Collect(ctx(t, 10*time.Second), loop, usageOf("web", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Contains(t, got.Err, "metrics.k8s.io: listing the pod metrics of deployment "+ns+"/web: ")
		assert.Contains(t, got.Err, "the server is currently unable to handle the request")
	})

	t.Run("metrics API hangs: returns at the deadline", func(t *testing.T) {
		m.setMode("hang")
		defer m.setMode("")
		began := time.Now()
		got := col.Collect(ctx(t, 500*time.Millisecond), loop, usageOf("web", "cpu"), now)
		assert.Less(t, time.Since(began), 20*time.Second, "it returns at the deadline, not when the API answers")
		assert.Nil(t, got.Value)
		assert.Contains(t, got.Err, "metrics.k8s.io")
	})

	t.Run("metrics server gone (connection refused)", func(t *testing.T) {
		gone := startMetricsAPI(t)
		mc := gone.client(t)
		gone.srv.Close()
		got := resources.New(e.c, mc).Collect(ctx(t, 10*time.Second), loop, usageOf("web", "cpu"), now)
		assert.Nil(t, got.Value)
		assert.Contains(t, got.Err, "metrics.k8s.io")
		assert.Contains(t, got.Err, "connection refused")
	})

	t.Run("through the manager's kind of client: a cache", func(t *testing.T) {
		ca, err := cache.New(e.Config, cache.Options{Scheme: controller.Scheme()})
		require.NoError(t, err)
		cctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = ca.Start(cctx) }()
		require.True(t, ca.WaitForCacheSync(ctx(t, 30*time.Second)))
		cached, err := client.New(e.Config, client.Options{Scheme: controller.Scheme(), Cache: &client.CacheOptions{Reader: ca}})
		require.NoError(t, err)
		got := resources.New(cached, m.client(t)).Collect(ctx(t, 30*time.Second), loop, usageOf("web", "cpu"), now)
		require.Empty(t, got.Err)
		assert.InDelta(t, 100*0.6/1.15, *got.Value, 1e-9)
	})

	t.Run("in a Set", func(t *testing.T) {
		l := loop.DeepCopy()
		l.Spec.Collectors = []v1alpha1.CollectorSpec{*usageOf("web", "cpu"), {Name: "mem", Resources: &v1alpha1.ResourcesCollector{Target: "web", Resource: "memory"}}}
		got := collectors.Set{v1alpha1.CollectorResources: col}.Metrics(ctx(t, 10*time.Second), l, now)
		require.Len(t, got, 2)
		assert.InDelta(t, 100*0.6/1.15, *got["usage"].Value, 1e-9)
		assert.NotNil(t, got["mem"].Value)
	})
}

// TestRBACMarkersSuffice collects as a user with exactly the permissions of this package's
// +kubebuilder:rbac markers, against the real API server's RBAC authorizer: reading workloads
// and Pods through a cache works, and the authorizer would let the user list metrics.k8s.io pods (which the
// aggregator checks before it proxies to metrics-server).
func TestRBACMarkersSuffice(t *testing.T) {
	e := start(t)
	user := cluster.RBACUser(t, e.APIServer, e.c, "governor-resources", cluster.MarkerRules(t, "."))
	uc, err := client.New(user, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)

	ns := e.namespace(t)
	e.create(t, deployment(ns, "web", container("app", requests("cpu", "100m"))))
	e.create(t, pod(ns, "web-a", "web", container("app", requests("cpu", "100m"))))
	e.metrics.add(ns, "web-a", map[string]string{"app": "web"}, time.Now(), "app", "50m", "1Mi")
	loop := loopWith(ns, target("web", "Deployment", "web"))

	require.Eventually(t, func() bool { // the binding reaches the authorizer's cache within moments
		return uc.List(ctx(t, 10*time.Second), &corev1.PodList{}, client.InNamespace(ns)) == nil
	}, 20*time.Second, 100*time.Millisecond)
	// The collector reads through a cache, as in the controller (list and
	// watch: the markers grant no get on what the cache holds).
	informers, err := cache.New(user, cache.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	stop, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = informers.Start(stop) }()
	cached, err := client.New(user, client.Options{Scheme: controller.Scheme(), Cache: &client.CacheOptions{Reader: informers}})
	require.NoError(t, err)

	var got collectors.Metric
	require.Eventually(t, func() bool {
		got = resources.New(cached, e.metrics.client(t)).Collect(ctx(t, 10*time.Second), loop, usageOf("web", "cpu"), time.Now())
		return got.Err == ""
	}, 30*time.Second, 100*time.Millisecond, "last error: %s", got.Err)
	assert.InDelta(t, 50.0, *got.Value, 1e-9)

	for _, ra := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "list", Group: "metrics.k8s.io", Resource: "pods"},
		{Namespace: ns, Verb: "watch", Group: "", Resource: "pods"},
		{Namespace: ns, Verb: "watch", Group: "apps", Resource: "statefulsets"},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}
		require.NoError(t, uc.Create(ctx(t, 10*time.Second), review))
		assert.True(t, review.Status.Allowed, "%s %s.%s", ra.Verb, ra.Resource, ra.Group)
	}
	// Least privilege: the collector writes nothing.
	assert.True(t, apierrors.IsForbidden(uc.Delete(ctx(t, 10*time.Second), pod(ns, "web-a", "web"))))
}
