package controller

import (
	"context"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/workload"
)

// tickReader is what a tick reads its targets through: the cache, with
// the HPAs of the loop's namespace (where all its targets are) listed once
// for all the tick's targets. Each target's read lists them to find its
// own (hpa.Find), and a list from the cache is a new object of the kind
// and a new slice, whether or not it holds anything: a tenth of all a
// thousand loops of ten targets allocated. Lists that ask for the cache's
// own objects (client.UnsafeDisableDeepCopy, read only) share the first;
// any other list is the cache's as it is.
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

func (r *tickReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	hpas, ok := list.(*autoscalingv2.HorizontalPodAutoscalerList)
	if !ok {
		return r.Reader.List(ctx, list, opts...)
	}
	o := (&client.ListOptions{}).ApplyOptions(opts)
	if o.UnsafeDisableDeepCopy == nil || !*o.UnsafeDisableDeepCopy || o.Namespace != r.namespace ||
		o.LabelSelector != nil || o.FieldSelector != nil || o.Limit != 0 || o.Continue != "" {
		return r.Reader.List(ctx, list, opts...)
	}
	if r.hpas != nil {
		*hpas = *r.hpas
		return nil
	}
	if err := r.Reader.List(ctx, hpas, opts...); err != nil {
		return err
	}
	r.hpas = hpas
	return nil
}
