package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// world is a trace played back: the current tick's metrics, simulated
// targets that guarded actions change, and the replayed loops themselves.
type world struct {
	tick      *Tick
	loops     map[string]*v1alpha1.ControlLoop        // by namespace/name
	targets   map[string]map[string]*actuators.Target // by loop key, target name
	actuators *actuators.Registry
}

func key(namespace, name string) string { return namespace + "/" + name }

func (w *world) Actuators() *actuators.Registry { return w.actuators }

func (w *world) Metrics(_ context.Context, loop *v1alpha1.ControlLoop, now time.Time) (map[string]collectors.Metric, error) {
	out := map[string]collectors.Metric{}
	for name, m := range w.tick.Metrics {
		out[name] = collectors.Metric{Value: m.Value, ObservedAt: now.Add(-m.Age), Fields: m.Fields}
	}
	for _, c := range loop.Spec.Collectors {
		if _, ok := out[c.Name]; !ok {
			out[c.Name] = collectors.Metric{Err: "not in the trace at this tick"}
		}
	}
	return out, nil
}

// Target is the simulated state: as the actuators start it from the spec,
// as actions and the trace's observations change it.
func (w *world) Target(_ context.Context, loop *v1alpha1.ControlLoop, spec *v1alpha1.TargetSpec) (*actuators.Target, map[string]any, error) {
	k := key(loop.Namespace, loop.Name)
	if w.targets[k] == nil {
		w.targets[k] = map[string]*actuators.Target{}
	}
	t, ok := w.targets[k][spec.Name]
	if !ok {
		t = &actuators.Target{Name: spec.Name, Workload: workload.Of(loop.Namespace, spec.Ref), Exists: true, Current: map[string]any{}}
		for _, a := range w.actuators.All() {
			t.Current[a.Field()] = a.Simulate(spec, nil, nil)
		}
		w.targets[k][spec.Name] = t
	}
	t.Spec = spec // the loop's spec may change between ticks
	if observed, ok := w.tick.Targets[spec.Name]; ok {
		for field, value := range observed {
			a, _ := w.actuators.Get(field)
			t.Current[field] = a.Simulate(spec, t.Current[field], value)
		}
	}
	return t, w.actuators.Doc(t), nil
}

// Act changes the simulated target as the actuators would change the real one.
func (w *world) Act(_ context.Context, t *actuators.Target, set decision.Set) (decision.Set, error) {
	for field, value := range set {
		a, _ := w.actuators.Get(field)
		t.Current[field] = a.Simulate(t.Spec, t.Current[field], value)
	}
	return set, nil
}

func (w *world) Loop(_ context.Context, namespace, name string) (*v1alpha1.ControlLoop, error) {
	return w.loops[key(namespace, name)], nil
}

// Override merges params into the supervised loop's overrides, as the API
// server's JSON merge patch does: null removes a key.
// Intend has nothing to make durable: a replay's status lives in memory.
func (w *world) Intend(_ context.Context, _ *v1alpha1.ControlLoop, _ []string, at time.Time) (time.Time, error) {
	return at, nil
}

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
