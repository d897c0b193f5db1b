//go:build integration

package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"governor.dev/governor/internal/localcluster"
)

func TestAPIServer(t *testing.T) {
	start := time.Now()
	s := StartAPIServer(t)
	t.Logf("StartAPIServer: %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := kubernetes.NewForConfig(s.Config)
	require.NoError(t, err)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "governor-test"}}
	_, err = cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	require.NoError(t, err)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns.Name},
		Data:       map[string]string{"mode": "reactive"},
	}
	_, err = cs.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{})
	require.NoError(t, err)

	gotNS, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.NamespaceActive, gotNS.Status.Phase)
	gotCM, err := cs.CoreV1().ConfigMaps(ns.Name).Get(ctx, cm.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"mode": "reactive"}, gotCM.Data)

	out, err := s.Kubectl("get", "namespaces", "-o", "name")
	require.NoError(t, err, out)
	assert.Contains(t, strings.Fields(out), "namespace/governor-test")
	assert.Contains(t, strings.Fields(out), "namespace/default")
	t.Logf("API server test total: %v", time.Since(start).Round(time.Millisecond))
}

const deploymentManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`

const hpaManifest = `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: %s
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 4
  maxReplicas: 6
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
`

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, Options{})
	t.Logf("StartCluster: %v", time.Since(start).Round(time.Millisecond))
	require.Len(t, c.Nodes, localcluster.DefaultNodes)
	cs, err := kubernetes.NewForConfig(c.Config)
	require.NoError(t, err)

	out, err := c.Kubectl("get", "nodes", "-o", "wide")
	require.NoError(t, err, out)
	t.Logf("kubectl get nodes:\n%s", out)

	t.Run("NodeLeases", func(t *testing.T) {
		// kwok renews a Lease per Node, as kubelets do.
		var last error
		ok := poll(20*time.Second, func() bool {
			for _, name := range c.Nodes {
				lease, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					last = err
					return false
				}
				if lease.Spec.RenewTime == nil {
					last = fmt.Errorf("lease %s never renewed", name)
					return false
				}
			}
			return true
		})
		require.True(t, ok, "Node Leases: %v", last)
	})

	t.Run("DeploymentPodsRunOnKwokNodes", func(t *testing.T) {
		start := time.Now()
		const ns = "deploy"
		out, err := c.KubectlApply(fmt.Sprintf(deploymentManifest, ns, 3))
		require.NoError(t, err, out)

		var last string
		ok := poll(60*time.Second, func() bool {
			running, why := runningPodsOf(t, cs, ns, "web")
			last = why
			return len(running) == 3
		})
		require.True(t, ok, "no 3 Running Pods of Deployment web within 60s: %s", last)
		t.Logf("3 Pods Running %v after kubectl apply", time.Since(start).Round(time.Millisecond))

		running, _ := runningPodsOf(t, cs, ns, "web")
		for _, p := range running {
			assert.Contains(t, c.Nodes, p.Spec.NodeName, "Pod %s", p.Name)
			assert.Equal(t, corev1.PodRunning, p.Status.Phase)
			assert.NotEmpty(t, p.Status.PodIP, "kwok assigns Pod IPs")
		}
		out, err = c.Kubectl("get", "pods", "-n", ns, "-o", "wide")
		require.NoError(t, err, out)
		t.Logf("kubectl get pods:\n%s", out)
	})

	t.Run("HPAEnforcesMinReplicas", func(t *testing.T) {
		start := time.Now()
		const ns = "hpa"
		out, err := c.KubectlApply(fmt.Sprintf(deploymentManifest, ns, 2))
		require.NoError(t, err, out)
		out, err = c.KubectlApply(fmt.Sprintf(hpaManifest, ns))
		require.NoError(t, err, out)

		ctx := context.Background()
		var replicas int32
		ok := poll(90*time.Second, func() bool {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false
			}
			replicas = *d.Spec.Replicas
			return replicas == 4
		})
		require.True(t, ok, "HPA did not raise Deployment web from 2 to minReplicas 4 within 90s (spec.replicas %d)", replicas)
		t.Logf("HPA raised the Deployment to 4 replicas %v after apply", time.Since(start).Round(time.Millisecond))

		// The Pods follow, and the HPA reports why it scaled without metrics.
		var last string
		ok = poll(60*time.Second, func() bool {
			running, why := runningPodsOf(t, cs, ns, "web")
			last = why
			return len(running) == 4
		})
		assert.True(t, ok, "no 4 Running Pods after the HPA scaled: %s", last)

		hpa, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, int32(4), hpa.Status.DesiredReplicas)

		// maxReplicas is enforced the same way, metrics or not.
		start = time.Now()
		out, err = c.Kubectl("scale", "-n", ns, "deployment/web", "--replicas=9")
		require.NoError(t, err, out)
		ok = poll(60*time.Second, func() bool {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false
			}
			replicas = *d.Spec.Replicas
			return replicas == 6
		})
		assert.True(t, ok, "HPA did not bring Deployment web from 9 down to maxReplicas 6 within 60s (spec.replicas %d)", replicas)
		t.Logf("HPA brought the Deployment from 9 to 6 replicas %v after kubectl scale", time.Since(start).Round(time.Millisecond))

		hpa, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		require.NoError(t, err)
		for _, cond := range hpa.Status.Conditions {
			t.Logf("HPA condition %s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
		out, err = c.Kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")
		require.NoError(t, err, out)
		t.Logf("HPA events:\n%s", out)
	})
	t.Logf("cluster test total: %v", time.Since(start).Round(time.Millisecond))
}

// runningPodsOf returns the Running Pods, scheduled to a Node, owned by a
// ReplicaSet of Deployment name, and a summary of all its Pods.
func runningPodsOf(t *testing.T, cs kubernetes.Interface, ns, name string) ([]corev1.Pod, string) {
	ctx := context.Background()
	rsList, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err.Error()
	}
	var replicaSets []string
	for _, rs := range rsList.Items {
		if ownedBy(rs.OwnerReferences, "Deployment", name) {
			replicaSets = append(replicaSets, rs.Name)
		}
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err.Error()
	}
	var running []corev1.Pod
	var summary []string
	for _, p := range pods.Items {
		owned := slices.ContainsFunc(replicaSets, func(rs string) bool { return ownedBy(p.OwnerReferences, "ReplicaSet", rs) })
		summary = append(summary, fmt.Sprintf("%s owned=%v node=%q phase=%s", p.Name, owned, p.Spec.NodeName, p.Status.Phase))
		if owned && p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	return running, fmt.Sprintf("ReplicaSets %v; Pods: %s", replicaSets, strings.Join(summary, "; "))
}

func ownedBy(refs []metav1.OwnerReference, kind, name string) bool {
	for _, r := range refs {
		if r.Kind == kind && r.Name == name && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// poll calls cond every 250ms until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}
