package controller

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller/guard"
)

// workload is the actuators' name for a loop's target.
func workload(loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) actuators.Target {
	kind := string(t.Ref.Kind)
	if kind == "" {
		kind = "Deployment"
	}
	return actuators.Target{Kind: kind, Namespace: loop.Namespace, Name: t.Ref.Name}
}

func bandwidthMode(t *v1alpha1.TargetSpec) string {
	if t.Bandwidth == nil || t.Bandwidth.Mode == "" {
		return string(v1alpha1.Live)
	}
	return string(t.Bandwidth.Mode)
}

// readTarget reads a target's current state: what the guard measures from,
// and what input.targets.<name> shows the policy.
func readTarget(ctx context.Context, c client.Reader, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) (guard.Target, map[string]any, error) {
	w := workload(loop, t)
	doc := map[string]any{"kind": w.Kind, "namespace": w.Namespace, "name": w.Name}
	obj, err := actuators.Get(ctx, c, w)
	if actuators.IsNotFound(err) {
		doc["exists"] = false
		return guard.Target{}, doc, nil
	}
	if err != nil {
		return guard.Target{}, nil, err
	}
	state := guard.Target{Exists: true, Containers: map[string]corev1.ResourceRequirements{}}
	doc["exists"] = true

	if r := specReplicas(obj); r != nil {
		n := int64(*r)
		state.Replicas = &n
		doc["replicas"] = n
	}

	egress, ingress, err := bandwidth.Current(ctx, c, w, bandwidthMode(t))
	if err != nil {
		return guard.Target{}, nil, err
	}
	state.Egress, state.Ingress = egress, ingress
	bw := map[string]any{}
	if egress != nil {
		bw["egress"] = egress.String()
	}
	if ingress != nil {
		bw["ingress"] = ingress.String()
	}
	doc["bandwidth"] = bw

	res := map[string]any{}
	for _, ctr := range actuators.PodTemplate(obj).Spec.Containers {
		state.Containers[ctr.Name] = ctr.Resources
		res[ctr.Name] = map[string]any{
			"requests": resourceListDoc(ctr.Resources.Requests),
			"limits":   resourceListDoc(ctr.Resources.Limits),
		}
	}
	doc["resources"] = res

	h, err := hpa.Find(ctx, c, w)
	if err != nil {
		return guard.Target{}, nil, err
	}
	if h != nil {
		minR := int64(1)
		if h.Spec.MinReplicas != nil {
			minR = int64(*h.Spec.MinReplicas)
		}
		state.HPA = &guard.HPA{Name: h.Name, MinReplicas: minR, MaxReplicas: int64(h.Spec.MaxReplicas)}
		doc["hpa"] = map[string]any{
			"name": h.Name, "minReplicas": minR, "maxReplicas": int64(h.Spec.MaxReplicas),
			"currentReplicas": int64(h.Status.CurrentReplicas), "desiredReplicas": int64(h.Status.DesiredReplicas),
		}
	}
	return state, doc, nil
}

func specReplicas(obj client.Object) *int32 {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Replicas
	case *appsv1.StatefulSet:
		return o.Spec.Replicas
	}
	return nil
}

func resourceListDoc(l corev1.ResourceList) map[string]any {
	out := map[string]any{}
	for name, q := range l {
		out[string(name)] = q.String()
	}
	return out
}
