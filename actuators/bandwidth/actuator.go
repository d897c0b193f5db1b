package bandwidth

import (
	"context"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// Field is the key of this actuator: "bandwidth": {"egress": "400M"} in a set.
const Field = "bandwidth"

// Value is a bandwidth in bits per second, as Cilium reads its annotations; nil leaves a
// direction alone (as a value) or means none is recorded (as a state).
type Value struct {
	Egress  *resource.Quantity `json:"egress,omitempty"`
	Ingress *resource.Quantity `json:"ingress,omitempty"`
}

// Actuator sets a target's egress and ingress bandwidth, within spec.targets[].bandwidth, in
// the target's mode. Its value and its current state are a Value.
type Actuator struct{}

// Field implements actuators.Actuator.
func (Actuator) Field() string { return Field }

// ReadsObjectOnly marks the state as read from the workload object (and the spec) alone.
func (Actuator) ReadsObjectOnly() {}

// Parse takes egress and/or ingress, Kubernetes quantities.
func (Actuator) Parse(p *decision.Parser, path string, raw any) any {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(path, "must be an object with egress and/or ingress, got %s", decision.Describe(raw))
		return nil
	}
	if len(obj) == 0 {
		p.Fail(path, "must set egress and/or ingress")
	}
	p.UnknownKeys(path, obj, []string{"egress", "ingress"})
	v := Value{}
	if e, ok := obj["egress"]; ok {
		v.Egress = p.Quantity(path+".egress", e)
	}
	if i, ok := obj["ingress"]; ok {
		v.Ingress = p.Quantity(path+".ingress", i)
	}
	return v
}

// Read is the desired bandwidth recorded on the workload as the registry read it (Current
// without a second read).
func (Actuator) Read(_ context.Context, _ client.Reader, t *actuators.Target) (any, error) {
	egress, ingress, err := recorded(t.Object, t.Workload, mode(t.Spec))
	return Value{Egress: egress, Ingress: ingress}, err
}

// Doc is {"egress": "400M", "egress_bps": 400000000, "ingress": ...}, empty when nothing
// is recorded. Each direction is a quantity string and, when it is a whole number of bits
// per second, that number too (_bps), so that a policy need not parse the string.
func (Actuator) Doc(current any) any {
	v, _ := current.(Value)
	doc := map[string]any{}
	for name, q := range map[string]*resource.Quantity{"egress": v.Egress, "ingress": v.Ingress} {
		if q == nil {
			continue
		}
		doc[name] = q.String()
		if bps, ok := actuators.Whole(*q, 0); ok {
			doc[name+"_bps"] = bps
		}
	}
	return doc
}

// Fit clamps each direction to [min, max] and maxStep from its current value.
func (Actuator) Fit(f *actuators.Fit, t *actuators.Target, want any) any {
	b := t.Spec.Bandwidth
	if b == nil {
		f.Refuse("bandwidth: the target declares no bandwidth bounds")
		return nil
	}
	w := want.(Value)
	cur, _ := t.Current[Field].(Value)
	r := v1alpha1.QuantityRange{Min: b.Min, Max: b.Max, MaxStep: b.MaxStep}
	out := Value{}
	if w.Egress != nil {
		out.Egress = f.Quantity(*w.Egress, r, cur.Egress, "egress bandwidth")
	}
	if w.Ingress != nil {
		out.Ingress = f.Quantity(*w.Ingress, r, cur.Ingress, "ingress bandwidth")
	}
	return out
}

// Apply writes the bandwidth in the target's mode.
func (Actuator) Apply(ctx context.Context, c client.Client, t *actuators.Target, value any) (bool, error) {
	v := value.(Value)
	return Apply(ctx, c, t.Workload, v.Egress, v.Ingress, mode(t.Spec))
}

// Simulate makes each direction given the value; replay starts with none recorded.
func (Actuator) Simulate(_ *v1alpha1.TargetSpec, current, value any) any {
	cur, _ := current.(Value)
	if v, ok := value.(Value); ok {
		if v.Egress != nil {
			cur.Egress = v.Egress
		}
		if v.Ingress != nil {
			cur.Ingress = v.Ingress
		}
	}
	return cur
}

// mode is the target's bandwidth mode (Live when it declares none).
func mode(spec *v1alpha1.TargetSpec) string {
	if spec.Bandwidth == nil || spec.Bandwidth.Mode == "" {
		return ModeLive
	}
	return string(spec.Bandwidth.Mode)
}
