//go:build integration

package bandwidth_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/internal/acttest"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/test/cluster"
)

// runningPods lists the Running, not terminating Pods labelled app=app, sorted by name, with
// the names of the ReplicaSets that control them.
func runningPods(ctx context.Context, c client.Client, ns, app string) ([]corev1.Pod, []string, error) {
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		return nil, nil, err
	}
	var pods []corev1.Pod
	owners := map[string]bool{}
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		pods = append(pods, p)
		if ref := metav1.GetControllerOf(&p); ref != nil {
			owners[ref.Kind+"/"+ref.Name] = true
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var rs []string
	for o := range owners {
		rs = append(rs, o)
	}
	sort.Strings(rs)
	return pods, rs, nil
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// TestEndToEndLiveBandwidth runs on a local cluster (kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler and kwok Nodes): the Pods of a 3-replica
// Deployment, made by the real ReplicaSet controller and Running on kwok Nodes, all get the
// live annotation from Apply without the Deployment rolling (same ReplicaSet, same Pods);
// scaled to 5 (by the replicas actuator), the 2 new Pods get the current value from the
// propagation controller.
func TestEndToEndLiveBandwidth(t *testing.T) {
	started := time.Now()
	cl := cluster.StartCluster(t, cluster.Options{})
	c := acttest.NewClient(t, cl.Config)
	env := &acttest.Env{APIServer: cl.APIServer, Client: c}
	ctx := acttest.Ctx(t, 4*time.Minute)
	ns := env.Namespace(t)
	acttest.StartManager(t, cl.Config, propagation)

	dep := acttest.Deployment(ns, "telemetry", 3, acttest.Container("upload", acttest.Requests("cpu", "10m")))
	env.Create(t, dep)
	target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "telemetry"}

	var before []corev1.Pod
	var owners []string
	acttest.Eventually(t, 60*time.Second, func() (bool, string) {
		var err error
		before, owners, err = runningPods(ctx, c, ns, "telemetry")
		if err != nil {
			return false, err.Error()
		}
		return len(before) == 3 && len(owners) == 1, fmt.Sprintf("running pods %v of %v", names(before), owners)
	})
	require.True(t, strings.HasPrefix(owners[0], "ReplicaSet/telemetry-"), "owner %s", owners[0])
	t.Logf("3 pods running %v after %v: %v", owners, time.Since(started).Round(time.Millisecond), names(before))

	applied := time.Now()
	changed, err := bandwidth.Apply(ctx, c, target, q("400M"), nil, bandwidth.ModeLive)
	require.NoError(t, err)
	assert.True(t, changed)
	t.Logf("Apply annotated the deployment and its pods in %v", time.Since(applied).Round(time.Millisecond))
	// Apply annotated every current Pod itself, before returning.
	for _, p := range before {
		got := &corev1.Pod{}
		require.NoError(t, c.Get(ctx, client.ObjectKeyFromObject(&p), got))
		assert.Equal(t, "400M", got.Annotations[bandwidth.EgressAnnotation], got.Name)
	}

	// No rollout: once the deployment controller has observed the annotation change, the
	// same ReplicaSet runs the same Pods.
	acttest.Eventually(t, 30*time.Second, func() (bool, string) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(dep), d); err != nil {
			return false, err.Error()
		}
		ok := d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == 3 && d.Status.Replicas == 3
		return ok, fmt.Sprintf("deployment generation %d observed %d, replicas %d updated %d",
			d.Generation, d.Status.ObservedGeneration, d.Status.Replicas, d.Status.UpdatedReplicas)
	})
	after, afterOwners, err := runningPods(ctx, c, ns, "telemetry")
	require.NoError(t, err)
	assert.Equal(t, owners, afterOwners, "same ReplicaSet")
	assert.Equal(t, names(before), names(after), "same Pods")
	rsList := &appsv1.ReplicaSetList{}
	require.NoError(t, c.List(ctx, rsList, client.InNamespace(ns)))
	assert.Len(t, rsList.Items, 1, "no new ReplicaSet")

	// Scale to 5: the 2 new Pods get the recorded value from the propagation controller.
	scaled := time.Now()
	changed, err = replicas.Apply(ctx, c, target, 5)
	require.NoError(t, err)
	assert.True(t, changed)
	var all []corev1.Pod
	acttest.Eventually(t, 60*time.Second, func() (bool, string) {
		var err error
		all, _, err = runningPods(ctx, c, ns, "telemetry")
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, p := range all {
			if p.Annotations[bandwidth.EgressAnnotation] != "400M" {
				missing = append(missing, p.Name)
			}
		}
		return len(all) == 5 && len(missing) == 0,
			fmt.Sprintf("running pods %v, without the annotation %v", names(all), missing)
	})
	t.Logf("5 pods running and annotated %v after scaling", time.Since(scaled).Round(time.Millisecond))
	old := map[string]bool{}
	for _, p := range before {
		old[p.Name] = true
	}
	var fresh []corev1.Pod
	for _, p := range all {
		if !old[p.Name] {
			fresh = append(fresh, p)
		}
	}
	require.Len(t, fresh, 2, "the 3 first Pods stay: %v", names(all))
	for _, p := range fresh {
		assert.Equal(t, owners[0], "ReplicaSet/"+metav1.GetControllerOf(&p).Name, p.Name)
		assert.JSONEq(t, egressField, acttest.Fields(&p, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""), p.Name)
	}
}
