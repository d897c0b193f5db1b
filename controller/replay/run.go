package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller"
)

// Row is one loop's tick: what it decided and what the guard let through,
// and the state after it.
type Row struct {
	Tick  *Tick
	Loop  string
	Entry v1alpha1.HistoryEntry
	// Targets are the simulated targets after the tick: each field's state
	// by target name, as its actuator keeps it.
	Targets map[string]map[string]any
	// Priorities are the loop's effective params.priorities after the
	// tick, when it has them.
	Priorities []string
	// Input is the input document the tick decided on (nil when it got
	// none), and State the policy's state after the tick.
	Input map[string]any
	State *apiextensionsv1.JSON
}

// Run plays a trace through loops, one tick of every loop per line;
// a supervised loop ticks before the loop that supervises it. The loops'
// statuses carry state, history, cooldowns and overrides as the
// controller's do; they are updated in place.
func Run(ctx context.Context, reg *bundles.Registry, loops []*v1alpha1.ControlLoop, trace []Tick) ([]Row, error) {
	ordered, err := order(loops)
	if err != nil {
		return nil, err
	}
	w := &world{loops: map[string]*v1alpha1.ControlLoop{}, targets: map[string]map[string]*actuators.Target{}, actuators: builtin.Actuators}
	for _, l := range ordered {
		w.loops[key(l.Namespace, l.Name)] = l
	}
	var rows []Row
	for i := range trace {
		w.tick = &trace[i]
		for _, l := range ordered {
			if l.Spec.State == v1alpha1.Paused {
				continue
			}
			step, err := controller.Step(ctx, w, reg, l, &l.Status, trace[i].Time)
			if err != nil {
				return rows, fmt.Errorf("%s at %s: %w", l.Name, trace[i].Time, err)
			}
			l.Status = *step.Status
			row := Row{Tick: w.tick, Loop: l.Name, Entry: step.Entry, Targets: map[string]map[string]any{}, Input: step.Input, State: l.Status.State}
			for name, t := range w.targets[key(l.Namespace, l.Name)] {
				row.Targets[name] = maps.Clone(t.Current)
			}
			row.Priorities = priorities(l)
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// order puts supervised loops before their supervisors, and refuses
// supervision that leaves the replay.
func order(loops []*v1alpha1.ControlLoop) ([]*v1alpha1.ControlLoop, error) {
	byName := map[string]*v1alpha1.ControlLoop{}
	for _, l := range loops {
		k := key(l.Namespace, l.Name)
		if byName[k] != nil {
			return nil, fmt.Errorf("loop %s given twice", k)
		}
		byName[k] = l
	}
	var out []*v1alpha1.ControlLoop
	for _, l := range loops {
		if l.Spec.Kind != v1alpha1.Deliberative {
			out = append(out, l)
		}
	}
	for _, l := range loops {
		if l.Spec.Kind == v1alpha1.Deliberative {
			if byName[key(l.Namespace, l.Spec.Supervises)] == nil {
				return nil, fmt.Errorf("%s supervises %s, which is not in the replay: give it with another --loop", l.Name, l.Spec.Supervises)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// priorities are a loop's effective params.priorities (params merged with
// overrides).
func priorities(l *v1alpha1.ControlLoop) []string {
	var params, overrides struct {
		Priorities []string `json:"priorities"`
	}
	if l.Spec.Policy.Params != nil {
		_ = json.Unmarshal(l.Spec.Policy.Params.Raw, &params)
	}
	if l.Status.Overrides != nil {
		_ = json.Unmarshal(l.Status.Overrides.Raw, &overrides)
	}
	if overrides.Priorities != nil {
		return overrides.Priorities
	}
	return params.Priorities
}
