package actuators

import (
	"context"
	"errors"
	"fmt"

	"governor.dev/governor/workload"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WorkloadApply is the apply configuration of a Deployment or a StatefulSet (exactly one of
// the two is set), as ExtractWorkload returns it: what "governor" owns of the workload now.
type WorkloadApply struct {
	Deployment  *appsv1ac.DeploymentApplyConfiguration
	StatefulSet *appsv1ac.StatefulSetApplyConfiguration
}

// ExtractWorkload returns what field manager "governor" owns of obj (a *appsv1.Deployment or
// *appsv1.StatefulSet read from the API), with the current values: the base of an apply
// that keeps every field governor owns and is not asked to change.
func ExtractWorkload(obj client.Object) (*WorkloadApply, error) {
	if err := RequireManagedFields(obj); err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		ac, err := appsv1ac.ExtractDeployment(o, FieldManager)
		if err != nil {
			return nil, err
		}
		return &WorkloadApply{Deployment: ac}, nil
	case *appsv1.StatefulSet:
		ac, err := appsv1ac.ExtractStatefulSet(o, FieldManager)
		if err != nil {
			return nil, err
		}
		return &WorkloadApply{StatefulSet: ac}, nil
	}
	return nil, fmt.Errorf("unsupported workload type %T", obj)
}

// Meta is the apply configuration's metadata (never nil).
func (w *WorkloadApply) Meta() *metav1ac.ObjectMetaApplyConfiguration {
	if w.Deployment != nil {
		if w.Deployment.ObjectMetaApplyConfiguration == nil {
			w.Deployment.ObjectMetaApplyConfiguration = &metav1ac.ObjectMetaApplyConfiguration{}
		}
		return w.Deployment.ObjectMetaApplyConfiguration
	}
	if w.StatefulSet.ObjectMetaApplyConfiguration == nil {
		w.StatefulSet.ObjectMetaApplyConfiguration = &metav1ac.ObjectMetaApplyConfiguration{}
	}
	return w.StatefulSet.ObjectMetaApplyConfiguration
}

// Template is the apply configuration's pod template (never nil; created on first use).
func (w *WorkloadApply) Template() *corev1ac.PodTemplateSpecApplyConfiguration {
	if w.Deployment != nil {
		if w.Deployment.Spec == nil {
			w.Deployment.WithSpec(appsv1ac.DeploymentSpec())
		}
		if w.Deployment.Spec.Template == nil {
			w.Deployment.Spec.WithTemplate(corev1ac.PodTemplateSpec())
		}
		return w.Deployment.Spec.Template
	}
	if w.StatefulSet.Spec == nil {
		w.StatefulSet.WithSpec(appsv1ac.StatefulSetSpec())
	}
	if w.StatefulSet.Spec.Template == nil {
		w.StatefulSet.Spec.WithTemplate(corev1ac.PodTemplateSpec())
	}
	return w.StatefulSet.Spec.Template
}

// Container is the apply configuration of the template's container name (never nil; added,
// keyed by its name, on first use).
func (w *WorkloadApply) Container(name string) *corev1ac.ContainerApplyConfiguration {
	tpl := w.Template()
	if tpl.Spec == nil {
		tpl.WithSpec(corev1ac.PodSpec())
	}
	for i := range tpl.Spec.Containers {
		if c := &tpl.Spec.Containers[i]; c.Name != nil && *c.Name == name {
			return c
		}
	}
	tpl.Spec.WithContainers(corev1ac.Container().WithName(name))
	return &tpl.Spec.Containers[len(tpl.Spec.Containers)-1]
}

// Object is the apply configuration to pass to client.Apply.
func (w *WorkloadApply) Object() runtime.ApplyConfiguration {
	if w.Deployment != nil {
		return w.Deployment
	}
	return w.StatefulSet
}

// RequireManagedFields refuses an object read without its managedFields (a cache that strips
// them, say): extracting what governor owns from it would find nothing, and an apply built on
// that would remove every field governor set before.
func RequireManagedFields(obj client.Object) error {
	if len(obj.GetManagedFields()) == 0 {
		return errors.New("read without managedFields (a cache that strips them?): cannot apply without dropping fields governor owns")
	}
	return nil
}

// ApplyWorkload is the read-modify-write of a workload by server-side apply:
//
//  1. read the workload (from c);
//  2. extract what "governor" owns of it;
//  3. call change with the workload and that apply configuration: it returns false when
//     nothing would change (no write is made), or sets the fields it changes on ac and
//     returns true;
//  4. apply ac as "governor", forced, with the resourceVersion read in 1 as a precondition.
//
// A Conflict (the workload changed since 1) starts again at 1, with Backoff. Errors say what
// and where ("deployment factory/web: ..."); a missing workload is a *NotFoundError.
func ApplyWorkload(ctx context.Context, c client.Client, t workload.Ref, change func(obj client.Object, ac *WorkloadApply) (bool, error)) (bool, error) {
	changed := false
	err := RetryOnConflict(func() error {
		changed = false
		obj, err := workload.Get(ctx, c, t)
		if err != nil {
			return err
		}
		ac, err := ExtractWorkload(obj)
		if err != nil {
			return t.Errorf("%w", err)
		}
		need, err := change(obj, ac)
		if err != nil || !need {
			return err
		}
		ac.Meta().WithResourceVersion(obj.GetResourceVersion())
		if err := c.Apply(ctx, ac.Object(), ApplyOptions()...); err != nil {
			return t.Errorf("apply: %w", err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// ApplyPod is ApplyWorkload for a Pod: read it, extract what "governor" owns, let change
// decide and set fields, apply with the resourceVersion as a precondition, retry on
// conflict. The first read uses pod as given (already read by the caller, from a cache or a
// list) when it is not nil.
func ApplyPod(ctx context.Context, c client.Client, key client.ObjectKey, pod *corev1.Pod, change func(pod *corev1.Pod, ac *corev1ac.PodApplyConfiguration) (bool, error)) (bool, error) {
	what := "pod " + key.String()
	changed := false
	first := true
	err := RetryOnConflict(func() error {
		changed = false
		if !first || pod == nil {
			pod = &corev1.Pod{}
			if err := c.Get(ctx, key, pod); err != nil {
				return workload.WrapGet(what, err)
			}
		}
		first = false
		if err := RequireManagedFields(pod); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		ac, err := corev1ac.ExtractPod(pod, FieldManager)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		need, err := change(pod, ac)
		if err != nil || !need {
			return err
		}
		ac.WithResourceVersion(pod.ResourceVersion)
		if err := c.Apply(ctx, ac, ApplyOptions()...); err != nil {
			return fmt.Errorf("%s: apply: %w", what, err)
		}
		changed = true
		return nil
	})
	return changed, err
}
