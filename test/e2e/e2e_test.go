//go:build integration

// Package e2e runs the controller on a local cluster whose Deployments
// really create Pods: kube-apiserver, etcd, kube-controller-manager,
// kube-scheduler and kwok, all built by `make envtest-assets`.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller"
	"governor.dev/governor/test/cluster"
)

const repo = "../.."

// The controller's own log: errors only, to stderr, where go test shows them.
func init() {
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel), zap.WriteTo(os.Stderr)))
}

func TestEndToEnd(t *testing.T) {
	k := cluster.StartCluster(t, cluster.Options{CRDDirs: []string{filepath.Join(repo, "config/crd/bases")}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, k.WaitForNodesReady(ctx))
	c, err := client.New(k.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)

	// The controller, with the shipped bundles and an "echo" bundle whose
	// decision is its params' (the test picks it; engine, contract and guard
	// judge it for real).
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(filepath.Join(dir, "bandwidth"), os.DirFS(filepath.Join(repo, "policies/bandwidth"))))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "echo"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo/.manifest"), []byte(`{"revision": "echo-1", "roots": ["test/echo"]}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "echo/echo.rego"), []byte("package test.echo\n\ndecision := input.params.decision\n"), 0o644))
	registry, err := bundles.LoadRegistry(ctx, dir)
	require.NoError(t, err)
	mgr, err := controller.NewManager(k.Config, controller.Options{Bundles: registry, MetricsAddr: "0", ProbeAddr: "0"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	ns := "factory"
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))

	t.Run("bandwidth lands live on the ReplicaSet's Pods, and on Pods made later", func(t *testing.T) {
		deployment(t, c, ns, "telemetry-upload", 3)
		pods := waitRunning(t, c, ns, "telemetry-upload", 3)
		rs := pods[0].OwnerReferences[0].Name

		loop(t, c, ns, "factory-qos", v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: metav1.Duration{Duration: 250 * time.Millisecond},
			Policy: v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision",
				Params: raw(`{"target_jitter_ms": 2.0, "cooldown_seconds": 600, "targets": ["telemetry"]}`)},
			Targets: []v1alpha1.TargetSpec{{Name: "telemetry", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "telemetry-upload"},
				Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("10M"), Max: resource.MustParse("1000M")}}},
			Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 10 * time.Minute}, StaleAfter: metav1.Duration{Duration: time.Minute}, MaxActions: 5},
		})
		observe(t, c, ns, "factory-qos", "jitter", "3.5")
		eventually(t, 10*time.Second, func() (bool, string) {
			pods := podsOf(t, c, ns, "telemetry-upload")
			return allEgress(pods, "800M") && len(pods) == 3, egressList(pods)
		})
		// Live: the same Pods, the same ReplicaSet, no rollout.
		now := podsOf(t, c, ns, "telemetry-upload")
		assert.Equal(t, names(pods), names(now))
		for _, p := range now {
			assert.Equal(t, rs, p.OwnerReferences[0].Name)
		}

		// A scale-up: the ReplicaSet controller makes two new Pods, which
		// get the current value too.
		var d appsv1.Deployment
		require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "telemetry-upload"}, &d))
		d.Spec.Replicas = ptr(int32(5))
		require.NoError(t, c.Update(ctx, &d))
		waitRunning(t, c, ns, "telemetry-upload", 5)
		eventually(t, 20*time.Second, func() (bool, string) {
			pods := podsOf(t, c, ns, "telemetry-upload")
			return len(pods) == 5 && allEgress(pods, "800M"), egressList(pods)
		})
	})

	t.Run("HPA bounds are enforced by the real HPA controller", func(t *testing.T) {
		deployment(t, c, ns, "web", 2)
		waitRunning(t, c, ns, "web", 2)
		require.NoError(t, c.Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
				MinReplicas:    ptr(int32(2)), MaxReplicas: 6,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(80))}}}},
			},
		}))
		loop(t, c, ns, "web-floor", v1alpha1.ControlLoopSpec{
			Kind: v1alpha1.Reactive, State: v1alpha1.Running, Interval: metav1.Duration{Duration: 250 * time.Millisecond},
			Policy: v1alpha1.PolicySpec{Bundle: "echo", Decision: "test/echo/decision",
				Params: raw(`{"decision": {"actions": [{"target": "web", "set": {"hpa": {"minReplicas": 4, "maxReplicas": 40}}}]}}`)},
			Targets: []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"},
				HPA: &v1alpha1.HPABounds{Min: 2, Max: 8}}},
			Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: 10 * time.Minute}, StaleAfter: metav1.Duration{Duration: time.Minute}, MaxActions: 5},
		})
		// The guard clamps maxReplicas 40 to 8; the HPA controller then
		// raises the Deployment to the new minimum of 4.
		eventually(t, 90*time.Second, func() (bool, string) {
			var h autoscalingv2.HorizontalPodAutoscaler
			require.NoError(t, c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &h))
			pods := podsOf(t, c, ns, "web")
			running := 0
			for _, p := range pods {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			return *h.Spec.MinReplicas == 4 && h.Spec.MaxReplicas == 8 && running == 4,
				fmt.Sprintf("hpa %d..%d, %d running pods", *h.Spec.MinReplicas, h.Spec.MaxReplicas, running)
		})
	})
}

func raw(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

func ptr[T any](v T) *T { return &v }

func deployment(t *testing.T, c client.Client, ns, name string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	require.NoError(t, c.Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": resource.MustParse("100m")}}}}},
			},
		},
	}))
}

func loop(t *testing.T, c client.Client, ns, name string, spec v1alpha1.ControlLoopSpec) {
	t.Helper()
	require.NoError(t, c.Create(context.Background(), &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}))
}

func observe(t *testing.T, c client.Client, ns, name, metric, value string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observations": map[string]any{
		metric: map[string]any{"value": value, "time": time.Now().UTC().Format(time.RFC3339)}}}})
	require.NoError(t, err)
	require.NoError(t, c.Status().Patch(context.Background(), &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch(types.MergePatchType, patch)))
}

func podsOf(t *testing.T, c client.Client, ns, app string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	require.NoError(t, c.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"app": app}))
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods
}

func waitRunning(t *testing.T, c client.Client, ns, app string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, 60*time.Second, func() (bool, string) {
		pods = podsOf(t, c, ns, app)
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
				running++
			}
		}
		return running == n && len(pods) == n, fmt.Sprintf("%d of %d pods running", running, len(pods))
	})
	return pods
}

func allEgress(pods []corev1.Pod, want string) bool {
	for _, p := range pods {
		if p.Annotations["kubernetes.io/egress-bandwidth"] != want {
			return false
		}
	}
	return len(pods) > 0
}

func egressList(pods []corev1.Pod) string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name+"="+p.Annotations["kubernetes.io/egress-bandwidth"])
	}
	return strings.Join(out, " ")
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
