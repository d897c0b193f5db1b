// Package replicas sets the replicas of a Deployment or a StatefulSet through its scale
// subresource (autoscaling/v1 Scale), by server-side apply as field manager "governor". It
// never fights a HorizontalPodAutoscaler: when one scales the workload, Apply refuses with an
// *OwnedByHPAError and the loop is to declare HPA bounds instead (package hpa).
package replicas

import (
	"context"
	"fmt"

	"governor.dev/governor/workload"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv1ac "k8s.io/client-go/applyconfigurations/autoscaling/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/hpa"
)

// OwnedByHPAError refuses to set the replicas of a workload that an HPA scales. Nothing was
// written.
type OwnedByHPAError struct {
	Target workload.Ref
	// HPA is the name of the HorizontalPodAutoscaler (in Target.Namespace).
	HPA string
}

func (e *OwnedByHPAError) Error() string {
	return fmt.Sprintf("replicas of %s are owned by HPA %s/%s: declare hpa bounds instead", e.Target, e.Target.Namespace, e.HPA)
}

// +kubebuilder:rbac:groups=apps,resources=deployments/scale;statefulsets/scale,verbs=get;patch
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=list;watch

// OwnerHPA returns the name of the autoscaling/v2 HPA in t's namespace whose scaleTargetRef
// is t, or "" when there is none.
func OwnerHPA(ctx context.Context, c client.Reader, t workload.Ref) (string, error) {
	h, err := hpa.Find(ctx, c, t)
	if err != nil || h == nil {
		return "", err
	}
	return h.Name, nil
}

// Apply sets the replicas of the workload t through its scale subresource. It reads the
// scale first and returns false, with no write, when spec.replicas is already n. An HPA that
// scales t is an *OwnedByHPAError (no write); a missing workload an
// *workload.NotFoundError.
func Apply(ctx context.Context, c client.Client, t workload.Ref, n int32) (bool, error) {
	if err := t.Validate(); err != nil {
		return false, err
	}
	if n < 0 {
		return false, t.Errorf("replicas %d is negative", n)
	}
	owner, err := OwnerHPA(ctx, c, t)
	if err != nil {
		return false, err
	}
	if owner != "" {
		return false, &OwnedByHPAError{Target: t, HPA: owner}
	}
	changed := false
	err = actuators.RetryOnConflict(func() error {
		changed = false
		cur, err := Get(ctx, c, t)
		if err != nil {
			return err
		}
		if cur.Spec.Replicas == n {
			return nil
		}
		scale := autoscalingv1ac.Scale().
			WithName(t.Name).WithNamespace(t.Namespace).
			WithResourceVersion(cur.ResourceVersion).
			WithSpec(autoscalingv1ac.ScaleSpec().WithReplicas(n))
		if err := c.SubResource("scale").Apply(ctx, applyConfig(t), actuators.SubResourceApplyOptions(scale)...); err != nil {
			return t.Errorf("apply scale: %w", err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// Get reads the scale subresource of the workload t.
func Get(ctx context.Context, c client.Client, t workload.Ref) (*autoscalingv1.Scale, error) {
	obj, err := t.NewObject()
	if err != nil {
		return nil, err
	}
	scale := &autoscalingv1.Scale{}
	if err := c.SubResource("scale").Get(ctx, obj, scale); err != nil {
		return nil, workload.WrapGet(t.String(), err)
	}
	return scale, nil
}

// applyConfig names the workload whose subresource is applied.
func applyConfig(t workload.Ref) runtime.ApplyConfiguration {
	if t.Kind == workload.KindStatefulSet {
		return appsv1ac.StatefulSet(t.Name, t.Namespace)
	}
	return appsv1ac.Deployment(t.Name, t.Namespace)
}
