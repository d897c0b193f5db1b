// Package hpa sets the bounds (minReplicas, maxReplicas) of autoscaling/v2
// HorizontalPodAutoscalers, and finds the HPA that scales a workload. Where an HPA scales a
// workload, a loop changes its replicas through the HPA's bounds, never directly (see
// package replicas).
package hpa

import (
	"context"
	"fmt"

	"governor.dev/governor/workload"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/runtime/schema"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
)

// DefaultMinReplicas is an HPA's minReplicas when the object leaves it unset.
const DefaultMinReplicas int32 = 1

// BoundsError refuses bounds whose result would have minReplicas above maxReplicas (or
// maxReplicas below 1). Nothing was written.
type BoundsError struct {
	// HPA is "namespace/name".
	HPA      string
	Min, Max int32
}

func (e *BoundsError) Error() string {
	if e.Max < 1 {
		return fmt.Sprintf("horizontalpodautoscaler %s: maxReplicas %d is below 1", e.HPA, e.Max)
	}
	return fmt.Sprintf("horizontalpodautoscaler %s: minReplicas %d would exceed maxReplicas %d", e.HPA, e.Min, e.Max)
}

// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=list;watch;patch

// Apply sets minReplicas and maxReplicas of the HPA namespace/name; nil leaves that bound
// alone. The bounds the HPA would have afterwards are checked first: minReplicas above
// maxReplicas is a *BoundsError and nothing is written. It returns false, with no write, when
// the HPA already has the bounds; a missing HPA is an *workload.NotFoundError.
func Apply(ctx context.Context, c client.Client, namespace, name string, minReplicas, maxReplicas *int32) (bool, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	what := "horizontalpodautoscaler " + key.String()
	if namespace == "" || name == "" {
		return false, fmt.Errorf("%s: namespace and name are required", what)
	}
	if minReplicas == nil && maxReplicas == nil {
		return false, nil
	}
	changed := false
	err := actuators.RetryOnConflict(func() error {
		changed = false
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		if err := c.Get(ctx, key, h); err != nil {
			return workload.WrapGet(what, err)
		}
		curMin, curMax := ptr.Deref(h.Spec.MinReplicas, DefaultMinReplicas), h.Spec.MaxReplicas
		newMin, newMax := ptr.Deref(minReplicas, curMin), ptr.Deref(maxReplicas, curMax)
		if newMin > newMax || newMax < 1 {
			return &BoundsError{HPA: key.String(), Min: newMin, Max: newMax}
		}
		if newMin == curMin && newMax == curMax && (minReplicas == nil || h.Spec.MinReplicas != nil) {
			return nil
		}
		if err := actuators.RequireManagedFields(h); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		ac, err := autoscalingv2ac.ExtractHorizontalPodAutoscaler(h, actuators.FieldManager)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ac.Spec == nil {
			ac.WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec())
		}
		if minReplicas != nil {
			ac.Spec.WithMinReplicas(*minReplicas)
		}
		if maxReplicas != nil {
			ac.Spec.WithMaxReplicas(*maxReplicas)
		}
		ac.WithResourceVersion(h.ResourceVersion)
		if err := c.Apply(ctx, ac, actuators.ApplyOptions()...); err != nil {
			return fmt.Errorf("%s: apply: %w", what, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// Find returns the HPA in t's namespace whose scaleTargetRef is the workload t (group apps,
// same kind and name), or nil when there is none. Of several, the first by name. Read
// through a cache, the HPA is the cache's own: read it, never change it. (Each read lists
// the namespace's HPAs, unless c is a Lister that holds them: deep-copied, 100 of them
// took 1,013 allocations and 150 µs a read; BenchmarkFindHPA.)
func Find(ctx context.Context, c client.Reader, t workload.Ref) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	items, err := listed(ctx, c, t.Namespace)
	if err != nil {
		return nil, t.Errorf("list horizontalpodautoscalers: %w", err)
	}
	var first *autoscalingv2.HorizontalPodAutoscaler
	for i := range items {
		if h := &items[i]; Targets(h, t) && (first == nil || h.Name < first.Name) {
			first = h
		}
	}
	return first, nil
}

// listed are a namespace's HPAs as c holds them: read only.
func listed(ctx context.Context, c client.Reader, namespace string) ([]autoscalingv2.HorizontalPodAutoscaler, error) {
	if l, ok := c.(Lister); ok {
		return l.HPAs(ctx, namespace)
	}
	list := &autoscalingv2.HorizontalPodAutoscalerList{}
	err := c.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy)
	return list.Items, err
}

// Lister is a reader that holds a namespace's HPAs listed already, for Find to look among
// (a tick's reader lists them once for all its targets). They are read only.
type Lister interface {
	HPAs(ctx context.Context, namespace string) ([]autoscalingv2.HorizontalPodAutoscaler, error)
}

// Targets reports whether h scales the workload t.
func Targets(h *autoscalingv2.HorizontalPodAutoscaler, t workload.Ref) bool {
	ref := h.Spec.ScaleTargetRef
	if h.Namespace != t.Namespace || ref.Kind != t.Kind || ref.Name != t.Name {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == appsv1.GroupName
}
