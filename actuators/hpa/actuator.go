package hpa

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// Field is the key of this actuator: "hpa": {"minReplicas": 2, "maxReplicas": 8} in a set.
const Field = "hpa"

// Bounds are what a decision sets of an autoscaling/v2 HorizontalPodAutoscaler; nil leaves a
// bound alone.
type Bounds struct {
	MinReplicas *int64 `json:"minReplicas,omitempty"`
	MaxReplicas *int64 `json:"maxReplicas,omitempty"`
}

// State is the HPA that scales a target, as read at a tick.
type State struct {
	Name                             string
	MinReplicas, MaxReplicas         int64
	CurrentReplicas, DesiredReplicas int64
}

// Actuator sets the bounds of the HPA that scales a target, within spec.targets[].hpa. Its
// value is a Bounds; its current state a *State (nil when no HPA scales the target).
type Actuator struct{}

// Field implements actuators.Actuator.
func (Actuator) Field() string { return Field }

// Parse takes minReplicas and/or maxReplicas, integers of at least 1, min not above max.
func (Actuator) Parse(p *decision.Parser, path string, raw any) any {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(path, "must be an object with minReplicas and/or maxReplicas, got %s", decision.Describe(raw))
		return nil
	}
	if len(obj) == 0 {
		p.Fail(path, "must set minReplicas and/or maxReplicas")
	}
	p.UnknownKeys(path, obj, []string{"minReplicas", "maxReplicas"})
	b := Bounds{}
	if m, ok := obj["minReplicas"]; ok {
		b.MinReplicas = p.Integer(path+".minReplicas", m, 1)
	}
	if m, ok := obj["maxReplicas"]; ok {
		b.MaxReplicas = p.Integer(path+".maxReplicas", m, 1)
	}
	if b.MinReplicas != nil && b.MaxReplicas != nil && *b.MinReplicas > *b.MaxReplicas {
		p.Fail(path, "minReplicas %d is above maxReplicas %d", *b.MinReplicas, *b.MaxReplicas)
	}
	return b
}

// Read finds the HPA that scales the target.
func (Actuator) Read(ctx context.Context, c client.Reader, t *actuators.Target) (any, error) {
	h, err := Find(ctx, c, t.Workload)
	if err != nil || h == nil {
		return (*State)(nil), err
	}
	s := &State{Name: h.Name, MinReplicas: int64(DefaultMinReplicas), MaxReplicas: int64(h.Spec.MaxReplicas),
		CurrentReplicas: int64(h.Status.CurrentReplicas), DesiredReplicas: int64(h.Status.DesiredReplicas)}
	if h.Spec.MinReplicas != nil {
		s.MinReplicas = int64(*h.Spec.MinReplicas)
	}
	return s, nil
}

// Doc is the HPA's name, bounds and replicas; nothing when there is none.
func (Actuator) Doc(current any) any {
	s, _ := current.(*State)
	if s == nil {
		return nil
	}
	return map[string]any{"name": s.Name, "minReplicas": s.MinReplicas, "maxReplicas": s.MaxReplicas,
		"currentReplicas": s.CurrentReplicas, "desiredReplicas": s.DesiredReplicas}
}

// Fit clamps each bound to [min, max]; the result must keep minReplicas <= maxReplicas.
func (Actuator) Fit(f *actuators.Fit, t *actuators.Target, want any) any {
	b := t.Spec.HPA
	cur, _ := t.Current[Field].(*State)
	switch {
	case b == nil:
		f.Refuse("hpa: the target declares no hpa bounds")
		return nil
	case cur == nil:
		f.Refuse("hpa: the target has no HorizontalPodAutoscaler")
		return nil
	case b.Min < 1:
		f.Refuse("hpa: bounds min %d is below 1", b.Min)
		return nil
	}
	w := want.(Bounds)
	out := Bounds{}
	minR, maxR := cur.MinReplicas, cur.MaxReplicas
	// No maxStep: a bound outside [min, max] goes where asked within them, or (Snap) to the
	// nearest.
	if w.MinReplicas != nil {
		v := f.Int(*w.MinReplicas, int64(b.Min), int64(b.Max), 0, &cur.MinReplicas, "hpa minReplicas")
		out.MinReplicas, minR = &v, v
	}
	if w.MaxReplicas != nil {
		v := f.Int(*w.MaxReplicas, int64(b.Min), int64(b.Max), 0, &cur.MaxReplicas, "hpa maxReplicas")
		out.MaxReplicas, maxR = &v, v
	}
	if f.Refusal != "" {
		return nil
	}
	if minR > maxR {
		f.Refuse("hpa: minReplicas %d would be above maxReplicas %d", minR, maxR)
		return nil
	}
	if minR != cur.MinReplicas || maxR != cur.MaxReplicas {
		f.Changes = true
	}
	return out
}

// Apply sets the bounds of the HPA found at Read.
func (Actuator) Apply(ctx context.Context, c client.Client, t *actuators.Target, value any) (bool, error) {
	cur, _ := t.Current[Field].(*State)
	if cur == nil {
		return false, t.Workload.Errorf("no HorizontalPodAutoscaler scales it")
	}
	b := value.(Bounds)
	return Apply(ctx, c, t.Workload.Namespace, cur.Name, int32p(b.MinReplicas), int32p(b.MaxReplicas))
}

// Simulate changes the bounds as asked; replay starts an HPA at the declared bounds, named
// as declared (or as the target's workload).
func (Actuator) Simulate(spec *v1alpha1.TargetSpec, current, value any) any {
	cur, _ := current.(*State)
	if value == nil {
		if cur != nil || spec.HPA == nil {
			return cur
		}
		name := spec.HPA.Name
		if name == "" {
			name = spec.Ref.Name
		}
		return &State{Name: name, MinReplicas: int64(spec.HPA.Min), MaxReplicas: int64(spec.HPA.Max)}
	}
	if cur == nil {
		return cur
	}
	next := *cur
	b := value.(Bounds)
	if b.MinReplicas != nil {
		next.MinReplicas = *b.MinReplicas
	}
	if b.MaxReplicas != nil {
		next.MaxReplicas = *b.MaxReplicas
	}
	return &next
}

func int32p(v *int64) *int32 {
	if v == nil {
		return nil
	}
	i := int32(*v)
	return &i
}
