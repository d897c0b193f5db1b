package controller

import (
	"context"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/workload"
)

// tickReader is what a tick reads its targets through: the cache, with
// the HPAs of the loop's namespace (where all its targets are) listed once
// for all the tick's targets (hpa.Lister). Each target's read looks among
// them for its own (hpa.Find), and a list from the cache is a new object
// of the kind and a new slice, whether or not it holds anything: a tenth
// of all a thousand loops of ten targets allocated.
type tickReader struct {
	client.Reader
	namespace string
	hpas      *autoscalingv2.HorizontalPodAutoscalerList // nil until listed
	// workloads, when set, hand out the cache's workloads as they are.
	workloads *WorkloadStores
}

// ViewWorkload implements workload.Viewer.
func (r *tickReader) ViewWorkload(ctx context.Context, t workload.Ref) (client.Object, bool, error) {
	if r.workloads == nil {
		return nil, false, nil
	}
	return r.workloads.ViewWorkload(ctx, t)
}

// HPAs implements hpa.Lister: the cache's own HPAs, listed at the first
// call of the tick for the loop's namespace (at each for another).
func (r *tickReader) HPAs(ctx context.Context, namespace string) ([]autoscalingv2.HorizontalPodAutoscaler, error) {
	if namespace == r.namespace && r.hpas != nil {
		return r.hpas.Items, nil
	}
	list := &autoscalingv2.HorizontalPodAutoscalerList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	if namespace == r.namespace {
		r.hpas = list
	}
	return list.Items, nil
}
