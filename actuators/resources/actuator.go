package resources

import (
	"context"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// Field is the key of this actuator: "resources": {"app": {"requests": {"cpu": "350m"}}} in
// a set.
const Field = "resources"

// Containers are containers' resources by container name: a decision's value (the names
// given), or a target's current pod template (every container).
type Containers map[string]Container

// Actuator sets containers' requests and limits, within spec.targets[].resources. Its value
// and its current state are Containers.
type Actuator struct{}

// Field implements actuators.Actuator.
func (Actuator) Field() string { return Field }

// ReadsObjectOnly marks the state as read from the workload object (and the spec) alone.
func (Actuator) ReadsObjectOnly() {}

// Parse takes an object keyed by container name, each with requests and/or limits of
// Kubernetes quantities.
func (Actuator) Parse(p *decision.Parser, path string, raw any) any {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(path, "must be an object keyed by container name, got %s", decision.Describe(raw))
		return nil
	}
	if len(obj) == 0 {
		p.Fail(path, "must name at least one container")
	}
	out := make(Containers, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		cf := path + "." + name
		c, ok := obj[name].(map[string]any)
		if !ok {
			p.Fail(cf, "must be an object with requests and/or limits, got %s", decision.Describe(obj[name]))
			continue
		}
		if len(c) == 0 {
			p.Fail(cf, "must set requests and/or limits")
		}
		p.UnknownKeys(cf, c, []string{"requests", "limits"})
		var cr Container
		if r, ok := c["requests"]; ok {
			cr.Requests = parseList(p, cf+".requests", r)
		}
		if l, ok := c["limits"]; ok {
			cr.Limits = parseList(p, cf+".limits", l)
		}
		out[name] = cr
	}
	return out
}

func parseList(p *decision.Parser, path string, raw any) corev1.ResourceList {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(path, "must be an object of resource quantities, got %s", decision.Describe(raw))
		return nil
	}
	if len(obj) == 0 {
		p.Fail(path, "must name at least one resource, such as cpu or memory")
	}
	out := make(corev1.ResourceList, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if q := p.Quantity(path+"."+name, obj[name]); q != nil {
			out[corev1.ResourceName(name)] = *q
		}
	}
	return out
}

// Read is the pod template's containers.
func (Actuator) Read(_ context.Context, _ client.Reader, t *actuators.Target) (any, error) {
	out := Containers{}
	if tpl := workload.PodTemplate(t.Object); tpl != nil {
		for _, c := range tpl.Spec.Containers {
			out[c.Name] = Container{Requests: c.Resources.Requests.DeepCopy(), Limits: c.Resources.Limits.DeepCopy()} // t.Object is the cache's
		}
	}
	return out, nil
}

// Doc is {"<container>": {"requests": {...}, "limits": {...}, "cpu_millis": {...},
// "memory_bytes": {...}}}: requests and limits as quantity strings, and cpu in millicores
// and memory in bytes as numbers, by kind ({"requests": 250, "limits": 1000}), where they
// are whole numbers of those units, so that a policy need not parse the strings.
func (Actuator) Doc(current any) any {
	cur, _ := current.(Containers)
	doc := map[string]any{}
	for name, c := range cur {
		doc[name] = map[string]any{
			"requests":     listDoc(c.Requests),
			"limits":       listDoc(c.Limits),
			"cpu_millis":   wholeDoc(c, corev1.ResourceCPU, resource.Milli),
			"memory_bytes": wholeDoc(c, corev1.ResourceMemory, 0),
		}
	}
	return doc
}

// wholeDoc is {"requests": n, "limits": n} of one resource of a container, in units of
// 10^scale, each where it is set and whole.
func wholeDoc(c Container, name corev1.ResourceName, scale resource.Scale) map[string]any {
	out := map[string]any{}
	if v, ok := whole(c.Requests, name, scale); ok {
		out["requests"] = v
	}
	if v, ok := whole(c.Limits, name, scale); ok {
		out["limits"] = v
	}
	return out
}

func whole(l corev1.ResourceList, name corev1.ResourceName, scale resource.Scale) (int64, bool) {
	q, ok := l[name]
	if !ok {
		return 0, false
	}
	return actuators.Whole(q, scale)
}

func listDoc(l corev1.ResourceList) map[string]any {
	out := map[string]any{}
	for name, q := range l {
		out[string(name)] = q.String()
	}
	return out
}

// Fit clamps each cpu and memory value to its range and maxStep; a container the target does
// not declare or have, a resource with no bounds, or a request above its limit is refused.
func (Actuator) Fit(f *actuators.Fit, t *actuators.Target, want any) any {
	b := t.Spec.Resources
	if b == nil {
		f.Refuse("resources: the target declares no resources bounds")
		return nil
	}
	current, _ := t.Current[Field].(Containers)
	w := want.(Containers)
	out := Containers{}
	for _, name := range slices.Sorted(maps.Keys(w)) {
		if len(b.Containers) > 0 && !slices.Contains(b.Containers, name) {
			f.Refuse("resources: container %s is not one of %v", name, b.Containers)
			return nil
		}
		cur, ok := current[name]
		if !ok {
			f.Refuse("resources: the target has no container %s", name)
			return nil
		}
		got := Container{
			Requests: fitList(f, b, name, "requests", w[name].Requests, cur.Requests),
			Limits:   fitList(f, b, name, "limits", w[name].Limits, cur.Limits),
		}
		if f.Refusal != "" {
			return nil
		}
		// Kubernetes refuses a request above its limit: check the result as the container
		// would have it.
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := merged(got.Requests, cur.Requests, res)
			lim, hasLim := merged(got.Limits, cur.Limits, res)
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				f.Refuse("resources: container %s would request %s %s above its limit %s", name, req.String(), res, lim.String())
				return nil
			}
		}
		out[name] = got
	}
	return out
}

func fitList(f *actuators.Fit, b *v1alpha1.ResourceBounds, container, field string, want, cur corev1.ResourceList) corev1.ResourceList {
	if want == nil {
		return nil
	}
	out := corev1.ResourceList{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		var r *v1alpha1.QuantityRange
		switch name {
		case corev1.ResourceCPU:
			r = b.CPU
		case corev1.ResourceMemory:
			r = b.Memory
		}
		if r == nil {
			f.Refuse("resources: the target declares no %s bounds", name)
			return nil
		}
		var current *resource.Quantity
		if q, ok := cur[name]; ok {
			current = &q
		}
		if q := f.Quantity(want[name], *r, current, fmt.Sprintf("%s %s.%s", container, field, name)); q != nil {
			out[name] = *q
		}
	}
	return out
}

// merged is a resource's value once a change is applied over the current list.
func merged(change, cur corev1.ResourceList, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := change[name]; ok {
		return q, true
	}
	q, ok := cur[name]
	return q, ok
}

// Apply sets the containers' values in the pod template.
func (Actuator) Apply(ctx context.Context, c client.Client, t *actuators.Target, value any) (bool, error) {
	return Apply(ctx, c, t.Workload, value.(Containers))
}

// Simulate replaces each container's value with the one given; replay starts with the
// declared containers and nothing requested.
func (Actuator) Simulate(spec *v1alpha1.TargetSpec, current, value any) any {
	cur, _ := current.(Containers)
	next := Containers{}
	for name, c := range cur {
		next[name] = Container{Requests: c.Requests.DeepCopy(), Limits: c.Limits.DeepCopy()}
	}
	if value == nil && cur == nil && spec.Resources != nil {
		for _, name := range spec.Resources.Containers {
			next[name] = Container{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
		}
	}
	v, _ := value.(Containers)
	for name, c := range v {
		n := next[name]
		if n.Requests == nil {
			n.Requests = corev1.ResourceList{}
		}
		if n.Limits == nil {
			n.Limits = corev1.ResourceList{}
		}
		maps.Copy(n.Requests, c.Requests)
		maps.Copy(n.Limits, c.Limits)
		next[name] = n
	}
	return next
}
