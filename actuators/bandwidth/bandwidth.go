// Package bandwidth sets the egress and ingress bandwidth of a workload's Pods through the
// annotations Cilium's bandwidth manager reads, kubernetes.io/egress-bandwidth and
// kubernetes.io/ingress-bandwidth (bits per second, Kubernetes quantities such as "400M").
//
// Cilium applies a change of these annotations on a running Pod without restarting it, while
// a change of a Deployment's pod template rolls the Deployment. So there are two modes:
//
//   - Live (the default): the desired value is recorded on the workload itself, in
//     Governor's own annotations governor.dev/egress-bandwidth and
//     governor.dev/ingress-bandwidth (metadata.annotations of the Deployment or StatefulSet,
//     not its template), and every current Pod of the workload is annotated in place. Pods
//     that appear later (scale-up, a replaced Pod, a rollout) get the recorded value from the
//     propagation controller (SetupPodPropagation).
//   - Template: the kubernetes.io annotations are written into the pod template
//     (spec.template.metadata.annotations), which rolls the workload.
//
// Every write is a server-side apply as field manager "governor", forced.
package bandwidth

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"governor.dev/governor/decision"
	"governor.dev/governor/workload"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
)

// The annotations Cilium reads on a Pod.
const (
	EgressAnnotation  = "kubernetes.io/egress-bandwidth"
	IngressAnnotation = "kubernetes.io/ingress-bandwidth"
)

// Governor's record of the desired value on the workload (mode Live).
const (
	DesiredEgressAnnotation  = "governor.dev/egress-bandwidth"
	DesiredIngressAnnotation = "governor.dev/ingress-bandwidth"
)

// The modes of Apply and Current.
const (
	// ModeLive records the value on the workload and annotates its Pods in place.
	ModeLive = "Live"
	// ModeTemplate writes the value into the pod template (rolls the workload).
	ModeTemplate = "Template"
)

// direction is one of egress and ingress: the annotation Cilium reads on the Pod and the one
// that records the desired value on the workload.
type direction struct {
	name    string // "egress", "ingress"
	pod     string // kubernetes.io/...
	desired string // governor.dev/...
}

var directions = [2]direction{
	{name: "egress", pod: EgressAnnotation, desired: DesiredEgressAnnotation},
	{name: "ingress", pod: IngressAnnotation, desired: DesiredIngressAnnotation},
}

// values are a desired value per direction (index as directions), nil for "leave alone".
type values [2]*resource.Quantity

func (v values) empty() bool { return v[0] == nil && v[1] == nil }

// Mode returns the canonical mode: "" is ModeLive; anything but ModeLive and ModeTemplate is
// an error.
func Mode(mode string) (string, error) {
	switch mode {
	case "", ModeLive:
		return ModeLive, nil
	case ModeTemplate:
		return ModeTemplate, nil
	}
	return "", fmt.Errorf("unknown bandwidth mode %q (want %s or %s)", mode, ModeLive, ModeTemplate)
}

// Permissions of Apply (read the workload, record the value on it or on its template, list
// and annotate its Pods).
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch;patch

// Apply sets the egress and ingress bandwidth of the workload t; nil leaves that direction
// alone. mode is ModeLive ("" too) or ModeTemplate (see the package documentation). It
// returns whether anything was written: false, with no write at all, when the workload
// (and in Live mode every current Pod) already has the values.
//
// In Live mode the Pods are those the workload's spec.selector selects in its namespace, less
// the ones being deleted or finished. A Pod that fails to be annotated does not stop the
// others; the errors are joined.
func Apply(ctx context.Context, c client.Client, t workload.Ref, egress, ingress *resource.Quantity, mode string) (bool, error) {
	if err := t.Validate(); err != nil {
		return false, err
	}
	mode, err := Mode(mode)
	if err != nil {
		return false, t.Errorf("%w", err)
	}
	want := values{egress, ingress}
	if want.empty() {
		return false, nil
	}
	if mode == ModeTemplate {
		return actuators.ApplyWorkload(ctx, c, t, func(obj client.Object, ac *actuators.WorkloadApply) (bool, error) {
			set := changes(workload.PodTemplate(obj).Annotations, want, podKey)
			if len(set) == 0 {
				return false, nil
			}
			ac.Template().WithAnnotations(set)
			return true, nil
		})
	}

	var selector *metav1.LabelSelector
	changed, err := actuators.ApplyWorkload(ctx, c, t, func(obj client.Object, ac *actuators.WorkloadApply) (bool, error) {
		selector = workload.Selector(obj)
		set := changes(obj.GetAnnotations(), want, desiredKey)
		if len(set) == 0 {
			return false, nil
		}
		ac.Meta().WithAnnotations(set)
		return true, nil
	})
	if err != nil {
		return changed, err
	}
	podsChanged, err := annotatePods(ctx, c, t, selector, want)
	return changed || podsChanged, err
}

// Current returns the desired bandwidth of the workload t as recorded: in Live mode its
// governor.dev annotations, in Template mode the kubernetes.io annotations of its pod
// template. nil means none is recorded for that direction.
func Current(ctx context.Context, c client.Reader, t workload.Ref, mode string) (egress, ingress *resource.Quantity, err error) {
	if _, err = Mode(mode); err != nil {
		return nil, nil, t.Errorf("%w", err)
	}
	obj, err := workload.View(ctx, c, t) // read only
	if err != nil {
		return nil, nil, err
	}
	return recorded(obj, t, mode)
}

// recorded is Current of the workload t as already read (obj, read only).
func recorded(obj client.Object, t workload.Ref, mode string) (egress, ingress *resource.Quantity, err error) {
	mode, err = Mode(mode)
	if err != nil {
		return nil, nil, t.Errorf("%w", err)
	}
	annotations, key, where := obj.GetAnnotations(), desiredKey, "annotation"
	if mode == ModeTemplate {
		annotations, key, where = workload.PodTemplate(obj).Annotations, podKey, "template annotation"
	}
	v, err := parse(annotations, key)
	if err != nil {
		return nil, nil, t.Errorf("%s %w", where, err)
	}
	return v[0], v[1], nil
}

func podKey(d direction) string     { return d.pod }
func desiredKey(d direction) string { return d.desired }

// changes returns the annotations (named by key) to set so that annotations hold want: only
// those that differ in value (a quantity written differently but equal, "1G" and "1000M", is
// no change). The values are written in their canonical form.
func changes(annotations map[string]string, want values, key func(direction) string) map[string]string {
	set := map[string]string{}
	for i, d := range directions {
		if want[i] == nil {
			continue
		}
		if !actuators.EqualQuantity(annotations[key(d)], *want[i]) {
			set[key(d)] = want[i].String()
		}
	}
	return set
}

// parse reads the quantities of the annotations named by key: nil where there is none.
func parse(annotations map[string]string, key func(direction) string) (values, error) {
	var v values
	for i, d := range directions {
		s, ok := annotations[key(d)]
		if !ok || s == "" {
			continue
		}
		q, err := decision.ParseQuantity(s)
		if err != nil {
			return values{}, fmt.Errorf("%s: %q is %w", key(d), s, err)
		}
		v[i] = &q
	}
	return v, nil
}

// podApplyConcurrency bounds the Pod applies of one action in flight at once.
const podApplyConcurrency = 8

// annotatePods sets the kubernetes.io annotations of want on every live Pod the selector
// selects in the target's namespace.
func annotatePods(ctx context.Context, c client.Client, t workload.Ref, selector *metav1.LabelSelector, want values) (bool, error) {
	if selector == nil {
		return false, t.Errorf("no spec.selector: cannot find its pods")
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return false, t.Errorf("spec.selector: %w", err)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(t.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return false, t.Errorf("list pods: %w", err)
	}
	// The Pods are annotated side by side: one after another, each apply's round trip to
	// the API server would add up, and the last Pod of a large workload would get its new
	// bandwidth long after the first.
	var (
		mu      sync.Mutex
		changed bool
		errs    []error
		g       errgroup.Group
	)
	g.SetLimit(podApplyConcurrency)
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !live(pod) {
			continue
		}
		g.Go(func() error {
			ok, err := annotatePod(ctx, c, pod, want)
			mu.Lock()
			defer mu.Unlock()
			changed = changed || ok
			if err != nil && !workload.IsNotFound(err) { // a Pod gone meanwhile needs nothing
				errs = append(errs, err)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines keep their errors in errs: one Pod's failure does not stop the others
	if len(errs) > 0 {
		return changed, t.Errorf("annotating pods: %w", errors.Join(errs...))
	}
	return changed, nil
}

// live reports whether a Pod is one to annotate: not being deleted, not finished.
func live(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// annotatePod sets the kubernetes.io annotations of want on a Pod (already read, as pod)
// where they differ, by server-side apply.
func annotatePod(ctx context.Context, c client.Client, pod *corev1.Pod, want values) (bool, error) {
	return actuators.ApplyPod(ctx, c, client.ObjectKeyFromObject(pod), pod, func(pod *corev1.Pod, ac *corev1ac.PodApplyConfiguration) (bool, error) {
		if !live(pod) {
			return false, nil
		}
		set := changes(pod.Annotations, want, podKey)
		if len(set) == 0 {
			return false, nil
		}
		ac.WithAnnotations(set)
		return true, nil
	})
}
