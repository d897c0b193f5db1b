package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
)

// world is a trace played back: the current tick's metrics, simulated
// targets that guarded actions change, and the replayed loops themselves.
type world struct {
	tick    *Tick
	loops   map[string]*v1alpha1.ControlLoop   // by namespace/name
	targets map[string]map[string]guard.Target // by loop key, target name
}

func key(namespace, name string) string { return namespace + "/" + name }

func (w *world) Metrics(_ context.Context, loop *v1alpha1.ControlLoop, now time.Time) map[string]collectors.Metric {
	out := map[string]collectors.Metric{}
	for name, m := range w.tick.Metrics {
		out[name] = collectors.Metric{Value: m.Value, ObservedAt: now.Add(-m.Age), Fields: m.Fields}
	}
	for _, c := range loop.Spec.Collectors {
		if _, ok := out[c.Name]; !ok {
			out[c.Name] = collectors.Metric{Err: "not in the trace at this tick"}
		}
	}
	return out
}

// Target is the simulated state: as the spec starts it, as actions and the
// trace's observations change it.
func (w *world) Target(_ context.Context, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) (guard.Target, map[string]any, error) {
	cur := w.target(loop, t)
	doc := map[string]any{"kind": string(t.Ref.Kind), "namespace": loop.Namespace, "name": t.Ref.Name, "exists": true}
	if cur.Replicas != nil {
		doc["replicas"] = *cur.Replicas
	}
	bw := map[string]any{}
	if cur.Egress != nil {
		bw["egress"] = cur.Egress.String()
	}
	if cur.Ingress != nil {
		bw["ingress"] = cur.Ingress.String()
	}
	doc["bandwidth"] = bw
	res := map[string]any{}
	for name, r := range cur.Containers {
		res[name] = map[string]any{"requests": listDoc(r.Requests), "limits": listDoc(r.Limits)}
	}
	doc["resources"] = res
	if cur.HPA != nil {
		doc["hpa"] = map[string]any{"name": cur.HPA.Name, "minReplicas": cur.HPA.MinReplicas, "maxReplicas": cur.HPA.MaxReplicas}
	}
	return cur, doc, nil
}

func (w *world) target(loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) guard.Target {
	k := key(loop.Namespace, loop.Name)
	if w.targets[k] == nil {
		w.targets[k] = map[string]guard.Target{}
	}
	cur, ok := w.targets[k][t.Name]
	if !ok {
		cur = initialTarget(t)
	}
	if o, ok := w.tick.Targets[t.Name]; ok {
		if o.Replicas != nil {
			cur.Replicas = o.Replicas
		}
		if q, err := resource.ParseQuantity(o.Bandwidth.Egress); err == nil {
			cur.Egress = &q
		}
		if q, err := resource.ParseQuantity(o.Bandwidth.Ingress); err == nil {
			cur.Ingress = &q
		}
	}
	w.targets[k][t.Name] = cur
	return cur
}

// initialTarget is a target before the trace says anything of it: its
// declared containers, its HPA at the declared bounds.
func initialTarget(t *v1alpha1.TargetSpec) guard.Target {
	cur := guard.Target{Exists: true, Containers: map[string]corev1.ResourceRequirements{}}
	if t.Resources != nil {
		for _, c := range t.Resources.Containers {
			cur.Containers[c] = corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
		}
	}
	if t.HPA != nil {
		name := t.HPA.Name
		if name == "" {
			name = t.Ref.Name
		}
		cur.HPA = &guard.HPA{Name: name, MinReplicas: int64(t.HPA.Min), MaxReplicas: int64(t.HPA.Max)}
	}
	return cur
}

// Act changes the simulated target as the actuators would change the real one.
func (w *world) Act(_ context.Context, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec, cur guard.Target, a bundles.Action) error {
	s := a.Set
	if s.Replicas != nil {
		n := *s.Replicas
		cur.Replicas = &n
	}
	if s.Bandwidth != nil {
		if s.Bandwidth.Egress != nil {
			cur.Egress = s.Bandwidth.Egress
		}
		if s.Bandwidth.Ingress != nil {
			cur.Ingress = s.Bandwidth.Ingress
		}
	}
	if s.Resources != nil {
		containers := map[string]corev1.ResourceRequirements{}
		for name, r := range cur.Containers {
			containers[name] = *r.DeepCopy()
		}
		for name, r := range s.Resources {
			c := containers[name]
			if c.Requests == nil {
				c.Requests = corev1.ResourceList{}
			}
			if c.Limits == nil {
				c.Limits = corev1.ResourceList{}
			}
			for k, q := range r.Requests {
				c.Requests[corev1.ResourceName(k)] = q
			}
			for k, q := range r.Limits {
				c.Limits[corev1.ResourceName(k)] = q
			}
			containers[name] = c
		}
		cur.Containers = containers
	}
	if s.HPA != nil && cur.HPA != nil {
		h := *cur.HPA
		if s.HPA.MinReplicas != nil {
			h.MinReplicas = *s.HPA.MinReplicas
		}
		if s.HPA.MaxReplicas != nil {
			h.MaxReplicas = *s.HPA.MaxReplicas
		}
		cur.HPA = &h
	}
	w.targets[key(loop.Namespace, loop.Name)][t.Name] = cur
	return nil
}

func (w *world) Loop(_ context.Context, namespace, name string) (*v1alpha1.ControlLoop, error) {
	return w.loops[key(namespace, name)], nil
}

// Override merges params into the supervised loop's overrides, as the API
// server's JSON merge patch does: null removes a key.
func (w *world) Override(_ context.Context, _, supervised *v1alpha1.ControlLoop, params map[string]any, source v1alpha1.OverridesSource) error {
	s := w.loops[key(supervised.Namespace, supervised.Name)]
	if s == nil {
		return fmt.Errorf("loop %s/%s is not in the replay", supervised.Namespace, supervised.Name)
	}
	current := map[string]any{}
	if s.Status.Overrides != nil {
		if err := json.Unmarshal(s.Status.Overrides.Raw, &current); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(mergePatch(current, params))
	if err != nil {
		return err
	}
	s.Status.Overrides = &apiextensionsv1.JSON{Raw: raw}
	s.Status.OverridesBy = &source
	return nil
}

// mergePatch applies an RFC 7386 merge patch.
func mergePatch(target, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range target {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			tv, _ := out[k].(map[string]any)
			out[k] = mergePatch(tv, pv)
		default:
			out[k] = v
		}
	}
	return out
}

func listDoc(l corev1.ResourceList) map[string]any {
	out := map[string]any{}
	for k, q := range l {
		out[string(k)] = q.String()
	}
	return out
}
