//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
	"governor.dev/governor/workload"
)

// The manager's cache holds ControlLoops without their managedFields (every
// replica caches every loop, and nothing reads them), and targets with
// theirs: an actuator applies only what it read them with.
func TestCacheKeepsManagedFieldsOfTargetsOnly(t *testing.T) {
	e := newEnv(t)
	mgr, _ := e.runManager(t, controller.Options{})
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 1)
	e.loop(t, ns, "web-loop", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Paused,
		Interval: metav1.Duration{Duration: time.Second},
		Policy:   v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision"},
		Targets:  []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"}}},
	})
	key := types.NamespacedName{Namespace: ns, Name: "web-loop"}
	require.NotEmpty(t, e.get(t, ns, "web-loop").ManagedFields, "the API server keeps the loop's managedFields")

	ctx := context.Background()
	var cached v1alpha1.ControlLoop
	require.Eventually(t, func() bool { return mgr.GetClient().Get(ctx, key, &cached) == nil }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, cached.ManagedFields, "the cache keeps the loops' managedFields")
	var target appsv1.Deployment
	require.Eventually(t, func() bool {
		return mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &target) == nil
	}, 10*time.Second, 10*time.Millisecond)
	assert.NotEmpty(t, target.ManagedFields, "the cache strips the targets' managedFields: actuators cannot apply")
}

// A replica taking a loop that another's view gave away trusts its cache
// once the cache has seen the version the view names (Loops.cacheHolds);
// that version is read from client-go's informer store through
// controller-runtime's cache (controller.StoreVersion). Against a real API
// server it must say a version, and reach the version of a loop's last
// write: were it silent (an informer that no longer exposes its store) or
// stuck (a store that does not follow its watch), every join would list the
// loops' versions instead, seconds at 10,000 loops (README, run M3).
func TestStoreVersionFollowsTheLoopsWatch(t *testing.T) {
	e := newEnv(t)
	mgr, _ := e.runManager(t, controller.Options{})
	ns := e.namespace(t)
	e.loop(t, ns, "web-loop", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Paused,
		Interval: metav1.Duration{Duration: time.Second},
		Policy:   v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision"},
	})
	version := controller.StoreVersion(mgr.GetCache())
	ctx := context.Background()
	for i := range 3 {
		loop := e.get(t, ns, "web-loop")
		patch := client.MergeFrom(loop.DeepCopy())
		loop.Labels = map[string]string{"write": fmt.Sprint(i)}
		require.NoError(t, e.c.Patch(ctx, loop, patch))
		written := loop.ResourceVersion
		require.Eventually(t, func() bool {
			c, err := resourceversion.CompareResourceVersion(version(), written)
			return err == nil && c >= 0
		}, 10*time.Second, 10*time.Millisecond, "the cache's store version never reached the write's %s (it said %q as the wait began)", written, version())
	}
}

// A tick reads its targets' workloads from the cache's stores as they are
// (controller.WorkloadStores): against a real API server they must be the
// objects a Get from the cache reads (once the informer has synced; before,
// ticks read by Get, which waits for it), follow a change, and say NotFound
// for none; a cache of several namespaces, whose informers give no store,
// says so (and its ticks read by Get).
func TestTicksViewWorkloadsInTheCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ns, other := e.namespace(t), e.namespace(t)
	e.deployment(t, ns, "web", 1)
	ref := workload.Ref{Kind: workload.KindDeployment, Namespace: ns, Name: "web"}

	mgr, _ := e.runManager(t, controller.Options{})
	stores := controller.NewWorkloadStores(mgr.GetCache())
	view := func(ref workload.Ref) (obj client.Object, err error) {
		t.Helper()
		require.Eventually(t, func() bool {
			var ok bool
			obj, ok, err = stores.ViewWorkload(ctx, ref)
			return ok
		}, 10*time.Second, 10*time.Millisecond, "the cache's informer of %s gives its store once synced", ref.Kind)
		return obj, err
	}
	obj, err := view(ref)
	require.NoError(t, err)
	var got appsv1.Deployment
	require.NoError(t, mgr.GetClient().Get(ctx, ref.Key(), &got, client.UnsafeDisableDeepCopy))
	assert.Equal(t, &got, obj, "the object a Get from the cache reads")

	var web appsv1.Deployment
	require.NoError(t, e.c.Get(ctx, ref.Key(), &web))
	patch := client.MergeFrom(web.DeepCopy())
	web.Annotations = map[string]string{"changed": "yes"}
	require.NoError(t, e.c.Patch(ctx, &web, patch))
	require.Eventually(t, func() bool {
		obj, _, err := stores.ViewWorkload(ctx, ref)
		return err == nil && obj.GetResourceVersion() == web.ResourceVersion && obj.GetAnnotations()["changed"] == "yes"
	}, 10*time.Second, 10*time.Millisecond, "the view follows the change")

	_, err = view(workload.Ref{Kind: workload.KindDeployment, Namespace: ns, Name: "none"})
	assert.True(t, workload.IsNotFound(err), "a workload that does not exist: %v", err)
	_, err = view(workload.Ref{Kind: workload.KindStatefulSet, Namespace: ns, Name: "web"})
	assert.True(t, workload.IsNotFound(err), "another kind's store: %v", err)

	scoped, _ := e.runManager(t, controller.Options{WatchNamespaces: []string{ns, other}})
	require.Eventually(t, func() bool { // the Deployments' informers synced
		return scoped.GetClient().Get(ctx, ref.Key(), &appsv1.Deployment{}) == nil
	}, 10*time.Second, 10*time.Millisecond)
	_, ok, err := controller.NewWorkloadStores(scoped.GetCache()).ViewWorkload(ctx, ref)
	assert.NoError(t, err)
	assert.False(t, ok, "a cache of several namespaces gives no store: its ticks read by Get")
}

// A loop's ticks see every change of their workload, though they take its
// state from the tick before while it reads at the same version (and the
// documents made of it: actuators.Last): a change of the Deployment by
// anyone, and a change of the loop's spec that reads the same Deployment
// otherwise (the bandwidth's mode: the template's annotation).
func TestTicksSeeTheirWorkloadsChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.startManager(t)
	ns := e.namespace(t)
	web := e.deployment(t, ns, "web", 1)
	e.loop(t, ns, "watch", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval: metav1.Duration{Duration: 100 * time.Millisecond},
		Policy:   v1alpha1.PolicySpec{Bundle: "targets", Decision: "test/targets/decision"},
		Targets:  []v1alpha1.TargetSpec{deploymentTarget("web", "web")},
		Safety:   v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: 15 * time.Second}, MaxActions: 5},
	})
	sees := func(want string) {
		t.Helper()
		eventually(t, 15*time.Second, func() (bool, string) {
			h, desc := lastEntry(e.get(t, ns, "watch"))
			return len(h.Events) == 1 && h.Events[0] == want, "want " + want + ", last tick " + desc
		})
	}
	sees("replicas=1 cpu=250 egress=none")

	e.update(t, web, func() { web.Spec.Replicas = ptr(int32(3)) })
	sees("replicas=3 cpu=250 egress=none")
	e.update(t, web, func() {
		web.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("500m")
	})
	sees("replicas=3 cpu=500 egress=none")
	e.update(t, web, func() {
		web.Annotations = map[string]string{bandwidth.DesiredEgressAnnotation: "10M"}
		web.Spec.Template.Annotations = map[string]string{bandwidth.EgressAnnotation: "20M"}
	})
	sees("replicas=3 cpu=500 egress=10M")

	loop := e.get(t, ns, "watch")
	e.update(t, loop, func() {
		loop.Spec.Targets[0].Bandwidth = &v1alpha1.BandwidthBounds{Min: resource.MustParse("1M"), Max: resource.MustParse("100M"), Mode: bandwidth.ModeTemplate}
	})
	sees("replicas=3 cpu=500 egress=20M")
	var now appsv1.Deployment
	require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(web), &now))
	assert.Equal(t, web.ResourceVersion, now.ResourceVersion, "the Deployment unchanged since")
}
