package resources

import (
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

func ctr(name, cpu string) corev1.Container {
	c := corev1.Container{Name: name}
	if cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
	return c
}

// Sidecars (init containers that keep running) count; init containers that ran to completion
// do not.
func TestPodRequestsCountSidecarsNotInitContainers(t *testing.T) {
	sidecar := ctr("mesh", "50m")
	sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	spec := &corev1.PodSpec{InitContainers: []corev1.Container{ctr("migrate", ""), sidecar}, Containers: []corev1.Container{ctr("app", "250m")}}
	got, undefined := podRequests(spec, corev1.ResourceCPU)
	assert.Empty(t, undefined)
	assert.InDelta(t, 0.3, got, 1e-12)

	spec.Containers = append(spec.Containers, ctr("b", ""), ctr("a", ""))
	_, undefined = podRequests(spec, corev1.ResourceCPU)
	assert.Equal(t, "no cpu request for container a, b", undefined)
}

// A terminating Pod's metrics are left out, and so are more than maxPerPod Pods' own figures
// (the sums stay).
func TestSummarizeLeavesOutTerminatingPodsAndBoundsPerPod(t *testing.T) {
	now := time.Unix(1000, 0)
	var items []metricsv1beta1.PodMetrics
	var pods []corev1.Pod
	for i := range maxPerPod + 2 {
		name := string(rune('a'+i)) + "-pod"
		items = append(items, metricsv1beta1.PodMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Timestamp: metav1.NewTime(now),
			Containers: []metricsv1beta1.ContainerMetrics{{Name: "app", Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}},
		})
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{ctr("app", "200m")}}})
	}
	gone := metav1.NewTime(now)
	pods[0].DeletionTimestamp = &gone
	m := summarize(workload.Ref{Kind: "Deployment", Namespace: "ns", Name: "web"}, corev1.ResourceCPU, items, pods, nil)
	assert.Empty(t, m.Err)
	assert.InDelta(t, 50.0, *m.Value, 1e-9)
	assert.Equal(t, maxPerPod+1, m.Fields["pods"])
	assert.NotContains(t, m.Fields, "per_pod")

	pods[1].DeletionTimestamp = &gone
	m = summarize(workload.Ref{Kind: "Deployment", Namespace: "ns", Name: "web"}, corev1.ResourceCPU, items, pods, nil)
	assert.Len(t, m.Fields["per_pod"], maxPerPod)
}
