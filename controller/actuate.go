package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller/guard"
)

// The controller's permissions on its own resource and for its events; the
// actuators declare theirs.
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops,verbs=get;list;watch
// +kubebuilder:rbac:groups=governor.dev,resources=controlloops/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// actuate carries out one guarded action. The guard has checked it against
// the target's bounds; the actuators write only what differs.
func actuate(ctx context.Context, c client.Client, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec, cur guard.Target, a bundles.Action) error {
	w := workload(loop, t)
	s := a.Set
	if s.HPA != nil && cur.HPA != nil {
		if _, err := hpa.Apply(ctx, c, loop.Namespace, cur.HPA.Name, int32p(s.HPA.MinReplicas), int32p(s.HPA.MaxReplicas)); err != nil {
			return err
		}
	}
	if s.Replicas != nil {
		if _, err := replicas.Apply(ctx, c, w, int32(*s.Replicas)); err != nil {
			return err
		}
	}
	if s.Resources != nil {
		containers := map[string]resources.Container{}
		for name, c := range s.Resources {
			containers[name] = resources.Container{Requests: resourceList(c.Requests), Limits: resourceList(c.Limits)}
		}
		if _, err := resources.Apply(ctx, c, w, containers); err != nil {
			return err
		}
	}
	if s.Bandwidth != nil {
		if _, err := bandwidth.Apply(ctx, c, w, s.Bandwidth.Egress, s.Bandwidth.Ingress, bandwidthMode(t)); err != nil {
			return err
		}
	}
	return nil
}

func int32p(v *int64) *int32 {
	if v == nil {
		return nil
	}
	i := int32(*v)
	return &i
}

func resourceList(m map[string]resource.Quantity) corev1.ResourceList {
	if m == nil {
		return nil
	}
	out := corev1.ResourceList{}
	for name, q := range m {
		out[corev1.ResourceName(name)] = q
	}
	return out
}
