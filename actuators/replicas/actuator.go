package replicas

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// Field is the key of this actuator: "replicas": 4 in a set.
const Field = "replicas"

// Actuator sets a target's replicas, within spec.targets[].replicas. Its value is an int64;
// its current state an *int64 (nil when unknown).
type Actuator struct{}

// Field implements actuators.Actuator.
func (Actuator) Field() string { return Field }

// ReadsObjectOnly marks the state as read from the workload object (and the spec) alone.
func (Actuator) ReadsObjectOnly() {}

// Parse takes an integer of at least 0.
func (Actuator) Parse(p *decision.Parser, path string, raw any) any {
	if n := p.Integer(path, raw, 0); n != nil {
		return *n
	}
	return nil
}

// Read is the workload's spec.replicas.
func (Actuator) Read(_ context.Context, _ client.Reader, t *actuators.Target) (any, error) {
	var r *int32
	switch o := t.Object.(type) {
	case *appsv1.Deployment:
		r = o.Spec.Replicas
	case *appsv1.StatefulSet:
		r = o.Spec.Replicas
	}
	if r == nil {
		return (*int64)(nil), nil
	}
	n := int64(*r)
	return &n, nil
}

// Doc is the number, or nothing when unknown.
func (Actuator) Doc(current any) any {
	if cur, _ := current.(*int64); cur != nil {
		return *cur
	}
	return nil
}

// Fit clamps to [min, max] and maxStep; an HPA that scales the target owns its replicas.
func (Actuator) Fit(f *actuators.Fit, t *actuators.Target, want any) any {
	b := t.Spec.Replicas
	if b == nil {
		f.Refuse("replicas: the target declares no replicas bounds")
		return nil
	}
	if h, _ := t.Current[hpa.Field].(*hpa.State); h != nil {
		f.Refuse("replicas: HPA %s owns the replicas of this target", h.Name)
		return nil
	}
	cur, _ := t.Current[Field].(*int64)
	got := f.Int(want.(int64), int64(b.Min), int64(b.Max), int64(b.MaxStep), cur, "replicas")
	if cur == nil || *cur != got {
		f.Changes = true
	}
	return got
}

// Apply sets the replicas through the scale subresource.
func (Actuator) Apply(ctx context.Context, c client.Client, t *actuators.Target, value any) (bool, error) {
	return Apply(ctx, c, t.Workload, int32(value.(int64)))
}

// Simulate makes the replicas the value; replay starts them unknown.
func (Actuator) Simulate(_ *v1alpha1.TargetSpec, current, value any) any {
	if value == nil {
		cur, _ := current.(*int64)
		return cur
	}
	n := value.(int64)
	return &n
}
