package guard

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// clamp fits one action's set into one target's bounds.
type clamp struct {
	spec *v1alpha1.TargetSpec
	cur  Target

	clamps  []string // what was changed to fit, for the notes
	refusal string   // why the whole action is refused, if it is
	changes bool     // whether the clamped set differs from the current state
}

func (c *clamp) refuse(format string, args ...any) {
	if c.refusal == "" {
		c.refusal = fmt.Sprintf(format, args...)
	}
}

func (c *clamp) set(s bundles.Set) bundles.Set {
	var out bundles.Set
	if s.Replicas != nil {
		out.Replicas = c.replicas(*s.Replicas)
	}
	if s.Bandwidth != nil {
		out.Bandwidth = c.bandwidth(s.Bandwidth)
	}
	if s.Resources != nil {
		out.Resources = c.resources(s.Resources)
	}
	if s.HPA != nil {
		out.HPA = c.hpa(s.HPA)
	}
	return out
}

func (c *clamp) replicas(want int64) *int64 {
	b := c.spec.Replicas
	switch {
	case b == nil:
		c.refuse("replicas: the target declares no replicas bounds")
		return nil
	case c.cur.HPA != nil:
		c.refuse("replicas: HPA %s owns the replicas of this target", c.cur.HPA.Name)
		return nil
	}
	got := clampInt(want, int64(b.Min), int64(b.Max), int64(b.MaxStep), c.cur.Replicas, "replicas", &c.clamps)
	if c.cur.Replicas == nil || *c.cur.Replicas != got {
		c.changes = true
	}
	return &got
}

func (c *clamp) bandwidth(want *bundles.Bandwidth) *bundles.Bandwidth {
	b := c.spec.Bandwidth
	if b == nil {
		c.refuse("bandwidth: the target declares no bandwidth bounds")
		return nil
	}
	out := &bundles.Bandwidth{}
	r := v1alpha1.QuantityRange{Min: b.Min, Max: b.Max, MaxStep: b.MaxStep}
	if want.Egress != nil {
		out.Egress = c.quantity(*want.Egress, r, c.cur.Egress, "egress bandwidth")
	}
	if want.Ingress != nil {
		out.Ingress = c.quantity(*want.Ingress, r, c.cur.Ingress, "ingress bandwidth")
	}
	return out
}

func (c *clamp) resources(want map[string]bundles.ContainerResources) map[string]bundles.ContainerResources {
	b := c.spec.Resources
	if b == nil {
		c.refuse("resources: the target declares no resources bounds")
		return nil
	}
	out := map[string]bundles.ContainerResources{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if len(b.Containers) > 0 && !slices.Contains(b.Containers, name) {
			c.refuse("resources: container %s is not one of %v", name, b.Containers)
			return nil
		}
		cur, ok := c.cur.Containers[name]
		if !ok {
			c.refuse("resources: the target has no container %s", name)
			return nil
		}
		w := want[name]
		got := bundles.ContainerResources{
			Requests: c.resourceList(name, "requests", w.Requests, cur.Requests),
			Limits:   c.resourceList(name, "limits", w.Limits, cur.Limits),
		}
		// Kubernetes refuses a request above its limit: check the result
		// as the container would have it.
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := merged(got.Requests, cur.Requests, res)
			lim, hasLim := merged(got.Limits, cur.Limits, res)
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				c.refuse("resources: container %s would request %s %s above its limit %s", name, req.String(), res, lim.String())
				return nil
			}
		}
		out[name] = got
	}
	return out
}

func (c *clamp) resourceList(container, field string, want map[string]resource.Quantity, cur corev1.ResourceList) map[string]resource.Quantity {
	if want == nil {
		return nil
	}
	out := map[string]resource.Quantity{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		var r *v1alpha1.QuantityRange
		switch corev1.ResourceName(name) {
		case corev1.ResourceCPU:
			r = c.spec.Resources.CPU
		case corev1.ResourceMemory:
			r = c.spec.Resources.Memory
		}
		if r == nil {
			c.refuse("resources: the target declares no %s bounds", name)
			return nil
		}
		var current *resource.Quantity
		if q, ok := cur[corev1.ResourceName(name)]; ok {
			current = &q
		}
		if q := c.quantity(want[name], *r, current, fmt.Sprintf("%s %s.%s", container, field, name)); q != nil {
			out[name] = *q
		}
	}
	return out
}

func (c *clamp) hpa(want *bundles.HPABounds) *bundles.HPABounds {
	b := c.spec.HPA
	switch {
	case b == nil:
		c.refuse("hpa: the target declares no hpa bounds")
		return nil
	case c.cur.HPA == nil:
		c.refuse("hpa: the target has no HorizontalPodAutoscaler")
		return nil
	}
	out := &bundles.HPABounds{}
	minR, maxR := c.cur.HPA.MinReplicas, c.cur.HPA.MaxReplicas
	if want.MinReplicas != nil {
		v := clampInt(*want.MinReplicas, int64(b.Min), int64(b.Max), 0, nil, "hpa minReplicas", &c.clamps)
		out.MinReplicas, minR = &v, v
	}
	if want.MaxReplicas != nil {
		v := clampInt(*want.MaxReplicas, int64(b.Min), int64(b.Max), 0, nil, "hpa maxReplicas", &c.clamps)
		out.MaxReplicas, maxR = &v, v
	}
	if minR > maxR {
		c.refuse("hpa: minReplicas %d would be above maxReplicas %d", minR, maxR)
		return nil
	}
	if minR != c.cur.HPA.MinReplicas || maxR != c.cur.HPA.MaxReplicas {
		c.changes = true
	}
	return out
}

// quantity clamps a quantity to a range and, when the current value is
// known, to one step from it.
func (c *clamp) quantity(want resource.Quantity, r v1alpha1.QuantityRange, cur *resource.Quantity, what string) *resource.Quantity {
	got := want.DeepCopy()
	if got.Cmp(r.Min) < 0 {
		c.clamps = append(c.clamps, fmt.Sprintf("%s %s raised to the minimum %s", what, want.String(), r.Min.String()))
		got = r.Min.DeepCopy()
	}
	if got.Cmp(r.Max) > 0 {
		c.clamps = append(c.clamps, fmt.Sprintf("%s %s lowered to the maximum %s", what, want.String(), r.Max.String()))
		got = r.Max.DeepCopy()
	}
	if r.MaxStep != nil && cur != nil {
		hi := cur.DeepCopy()
		hi.Add(*r.MaxStep)
		lo := cur.DeepCopy()
		lo.Sub(*r.MaxStep)
		switch {
		case got.Cmp(hi) > 0:
			c.clamps = append(c.clamps, fmt.Sprintf("%s %s limited to one step (%s) above %s", what, got.String(), r.MaxStep.String(), cur.String()))
			got = hi
		case got.Cmp(lo) < 0:
			c.clamps = append(c.clamps, fmt.Sprintf("%s %s limited to one step (%s) below %s", what, got.String(), r.MaxStep.String(), cur.String()))
			got = lo
		}
	}
	if cur == nil || got.Cmp(*cur) != 0 {
		c.changes = true
	}
	return &got
}

// clampInt clamps an integer to [lo, hi] and, when step > 0 and the current
// value is known, to one step from it.
func clampInt(want, lo, hi, step int64, cur *int64, what string, clamps *[]string) int64 {
	got := want
	if got < lo {
		*clamps = append(*clamps, fmt.Sprintf("%s %d raised to the minimum %d", what, want, lo))
		got = lo
	}
	if got > hi {
		*clamps = append(*clamps, fmt.Sprintf("%s %d lowered to the maximum %d", what, want, hi))
		got = hi
	}
	if step > 0 && cur != nil {
		switch {
		case got > *cur+step:
			*clamps = append(*clamps, fmt.Sprintf("%s %d limited to one step (%d) above %d", what, got, step, *cur))
			got = *cur + step
		case got < *cur-step:
			*clamps = append(*clamps, fmt.Sprintf("%s %d limited to one step (%d) below %d", what, got, step, *cur))
			got = *cur - step
		}
	}
	return got
}

// merged is a resource's value once a change is applied over the current list.
func merged(change map[string]resource.Quantity, cur corev1.ResourceList, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := change[string(name)]; ok {
		return q, true
	}
	q, ok := cur[name]
	return q, ok
}
