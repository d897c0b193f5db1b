// Package resources is the collector of a target's CPU or memory usage, read from the resource
// metrics API (metrics.k8s.io v1beta1, as metrics-server serves it), as a percentage of the
// target's requests: the figure an HPA scales on, and the one policy thresholds such as
// {"cpu": {"kind": "superior", "threshold": 80}} mean.
//
// One collection, for a collector {resources: {target: web, resource: cpu}}:
//
//  1. the target named web in spec.targets gives the workload (a Deployment or StatefulSet in
//     the loop's namespace), read through the client;
//  2. the workload's selector lists the PodMetrics of its Pods (one request to metrics.k8s.io)
//     and its Pods (from the client; the manager's cache);
//  3. the usage of every container of every Pod with metrics is summed, and so are the requests
//     of those same Pods; Value is 100 × usage / requests.
//
// Requests come from the Pods themselves, not from the pod template × the number of Pods: a
// Pod runs with the requests it was created with, and while a workload rolls out (which is
// what the resources actuator causes when it changes the template) old and new Pods have
// different requests. A percentage against the template would jump the moment the template
// changes, before any Pod has, and a loop would read its own action as an effect. The pod
// template is used only for a Pod the client does not know yet (a cache that has not caught up
// with a Pod the metrics API already reports).
//
// As for an HPA, a Pod's requests are undefined when any of its containers has none (a
// percentage against the others' requests would overstate the usage): the metric then has no
// Value and says why in Err, and Fields still carry the usage.
package resources

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"governor.dev/governor/workload"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
)

// +kubebuilder:rbac:groups=metrics.k8s.io,resources=pods,verbs=list
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch

// maxPerPod bounds the Pods listed one by one in Fields["per_pod"]: beyond it only the sums
// are given (a large workload would otherwise swell every input document).
const maxPerPod = 20

// Collector reads a target's resource usage from metrics.k8s.io. It is a collectors.Source and
// safe for concurrent use.
type Collector struct {
	c       client.Reader
	metrics metricsclient.Interface
}

var _ collectors.Source = (*Collector)(nil)

// New returns a Collector that reads workloads and Pods with c (the manager's cached client
// does) and PodMetrics with metrics.
func New(c client.Reader, metrics metricsclient.Interface) *Collector {
	return &Collector{c: c, metrics: metrics}
}

// Collect reads one resources collector of loop. The Metric's Value is the usage of
// spec.Resources.Resource by the target's Pods as a percentage of their requests; Fields:
//
//   - usage, requests: sums over the Pods with metrics, in cores (cpu) or bytes (memory);
//     requests is absent when a Pod's requests are undefined;
//   - pods: how many Pods have metrics; pods_without_metrics: Pods the selector matches that
//     the metrics API does not report (just started, or metrics-server behind), not counted;
//   - window_seconds: the longest window the metrics API averaged the usage over;
//   - per_pod: {pod: {usage, requests, percent}} for at most 20 Pods.
//
// ObservedAt is the oldest PodMetrics timestamp: the metric is as fresh as its stalest part.
// Failures (unknown target, workload not found, metrics API unavailable, no Pods with
// metrics) leave Value nil and say why in Err.
func (c *Collector) Collect(ctx context.Context, loop *v1alpha1.ControlLoop, spec *v1alpha1.CollectorSpec, now time.Time) collectors.Metric {
	if spec == nil || spec.Resources == nil {
		return collectors.Metric{Err: "not a resources collector"}
	}
	rc := spec.Resources
	res := corev1.ResourceName(rc.Resource)
	if res != corev1.ResourceCPU && res != corev1.ResourceMemory {
		return collectors.Metric{Err: fmt.Sprintf("resource %q: want cpu or memory", rc.Resource)}
	}
	target, err := findTarget(loop, rc.Target)
	if err != nil {
		return collectors.Metric{Err: err.Error()}
	}
	obj, err := workload.Get(ctx, c.c, target)
	if err != nil {
		return collectors.Metric{Err: err.Error()}
	}
	sel, err := selector(obj)
	if err != nil {
		return collectors.Metric{Err: target.Errorf("%v", err).Error()}
	}

	list, err := c.metrics.MetricsV1beta1().PodMetricses(target.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return collectors.Metric{Err: fmt.Sprintf("metrics.k8s.io: listing the pod metrics of %s: %v", target, err)}
	}
	pods := &corev1.PodList{}
	if err := c.c.List(ctx, pods, client.InNamespace(target.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return collectors.Metric{Err: target.Errorf("listing pods: %v", err).Error()}
	}
	return summarize(target, res, list.Items, pods.Items, workload.PodTemplate(obj))
}

// findTarget is the workload of the loop's target called name.
func findTarget(loop *v1alpha1.ControlLoop, name string) (workload.Ref, error) {
	var names []string
	for i := range loop.Spec.Targets {
		t := &loop.Spec.Targets[i]
		if t.Name == name {
			return workload.Of(loop.Namespace, t.Ref), nil
		}
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return workload.Ref{}, fmt.Errorf("unknown target %q: the loop has no targets", name)
	}
	return workload.Ref{}, fmt.Errorf("unknown target %q: the loop's targets are %s", name, strings.Join(names, ", "))
}

// selector is the workload's pod selector; an empty one (which would select every Pod of the
// namespace) is refused.
func selector(obj client.Object) (labels.Selector, error) {
	ls := workload.Selector(obj)
	if ls == nil {
		return nil, fmt.Errorf("no pod selector")
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("pod selector: %w", err)
	}
	if sel.Empty() {
		return nil, fmt.Errorf("empty pod selector")
	}
	return sel, nil
}

// podFigures is one Pod's part of the sums.
type podFigures struct {
	usage, requests float64
	// undefined says why the Pod's requests are undefined ("" when they are defined).
	undefined string
}

// summarize turns the PodMetrics and Pods of a target into its Metric.
func summarize(target workload.Ref, res corev1.ResourceName, items []metricsv1beta1.PodMetrics, pods []corev1.Pod, template *corev1.PodTemplateSpec) collectors.Metric {
	sums := sumPods(res, items, pods, template)

	var missing []string
	for i := range pods {
		if counts(&pods[i]) && !sums.reported[pods[i].Name] {
			missing = append(missing, pods[i].Name)
		}
	}
	sort.Strings(missing)

	if len(sums.figures) == 0 {
		if len(missing) == 0 {
			return collectors.Metric{Err: fmt.Sprintf("%s: no pods", target)}
		}
		return collectors.Metric{
			Err:    fmt.Sprintf("%s: no metrics for any of its %d pods in metrics.k8s.io", target, len(missing)),
			Fields: map[string]any{"pods": 0, "pods_without_metrics": len(missing)},
		}
	}

	fields := map[string]any{
		"usage":                sums.usage,
		"pods":                 len(sums.figures),
		"pods_without_metrics": len(missing),
		"window_seconds":       sums.window.Seconds(),
	}
	if len(missing) > 0 {
		fields["missing"] = stringsAny(missing, maxPerPod)
	}
	if len(sums.figures) <= maxPerPod {
		fields["per_pod"] = perPod(sums.figures)
	}
	m := collectors.Metric{ObservedAt: sums.oldest, Fields: fields}
	switch {
	case len(sums.undefined) > 0:
		sort.Strings(sums.undefined)
		m.Err = fmt.Sprintf("%s: percentage of requests undefined: %s", target, strings.Join(firstN(sums.undefined, 3), "; "))
	case sums.requests <= 0:
		m.Err = fmt.Sprintf("%s: percentage of requests undefined: the %s requests of its pods sum to 0", target, res)
	default:
		fields["requests"] = sums.requests
		v := 100 * sums.usage / sums.requests
		if math.IsInf(v, 0) || math.IsNaN(v) {
			m.Err = fmt.Sprintf("%s: percentage of requests is not finite", target)
			break
		}
		m.Value = &v
	}
	return m
}

// podSums are the sums over a target's Pods that have metrics.
type podSums struct {
	figures  map[string]podFigures // by Pod name
	reported map[string]bool       // the Pods whose metrics are counted
	usage    float64
	requests float64
	// undefined says, Pod by Pod, why the requests are undefined.
	undefined []string
	// oldest is the time of the oldest metrics, window the longest window.
	oldest time.Time
	window time.Duration
}

// sumPods adds up the PodMetrics items of the Pods that count, each Pod once: its usage of
// res, and its requests as its spec in pods says (or the pod template, for a Pod not found).
func sumPods(res corev1.ResourceName, items []metricsv1beta1.PodMetrics, pods []corev1.Pod, template *corev1.PodTemplateSpec) podSums {
	byName := make(map[string]*corev1.Pod, len(pods))
	for i := range pods {
		byName[pods[i].Name] = &pods[i]
	}
	s := podSums{figures: map[string]podFigures{}, reported: map[string]bool{}}
	for i := range items {
		m := &items[i]
		pod := byName[m.Name]
		if pod != nil && !counts(pod) {
			continue // terminating or finished: not part of the workload's load any more
		}
		if s.reported[m.Name] {
			continue
		}
		s.reported[m.Name] = true
		f := podFigures{}
		for _, ctr := range m.Containers {
			if q, ok := ctr.Usage[res]; ok {
				f.usage += q.AsApproximateFloat64()
			}
		}
		var spec *corev1.PodSpec
		switch {
		case pod != nil:
			spec = &pod.Spec
		case template != nil:
			spec = &template.Spec
		}
		f.requests, f.undefined = podRequests(spec, res)
		if f.undefined != "" {
			s.undefined = append(s.undefined, "pod "+m.Name+": "+f.undefined)
		}
		s.figures[m.Name] = f
		s.usage += f.usage
		s.requests += f.requests
		if ts := m.Timestamp.Time; s.oldest.IsZero() || ts.Before(s.oldest) {
			s.oldest = ts
		}
		s.window = max(s.window, m.Window.Duration)
	}
	return s
}

// perPod is the per_pod field: each Pod's usage, and its requests and percentage of them
// when they are defined.
func perPod(figures map[string]podFigures) map[string]any {
	out := make(map[string]any, len(figures))
	for name, f := range figures {
		p := map[string]any{"usage": f.usage}
		if f.undefined == "" {
			p["requests"] = f.requests
			if f.requests > 0 {
				p["percent"] = 100 * f.usage / f.requests
			}
		}
		out[name] = p
	}
	return out
}

// counts reports whether a Pod is part of the workload's current load: not terminating and
// neither succeeded nor failed.
func counts(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// podRequests is what a Pod requests of res: the sum over its containers and its sidecars
// (init containers that keep running: restartPolicy Always), as float cores or bytes. A
// container without a request of res makes the Pod's requests undefined: the second result
// says which.
func podRequests(spec *corev1.PodSpec, res corev1.ResourceName) (float64, string) {
	if spec == nil {
		return 0, "not found, and the workload has no pod template"
	}
	var sum float64
	var without []string
	add := func(c *corev1.Container) {
		q, ok := c.Resources.Requests[res]
		if !ok {
			without = append(without, c.Name)
			return
		}
		sum += q.AsApproximateFloat64()
	}
	for i := range spec.InitContainers {
		if c := &spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range spec.Containers {
		add(&spec.Containers[i])
	}
	if len(without) > 0 {
		slices.Sort(without)
		return 0, fmt.Sprintf("no %s request for container %s", res, strings.Join(without, ", "))
	}
	return sum, ""
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

// stringsAny is s as the []any a policy input holds, at most n of them.
func stringsAny(s []string, n int) []any {
	out := make([]any, 0, min(len(s), n))
	for _, v := range s[:min(len(s), n)] {
		out = append(out, v)
	}
	return out
}
