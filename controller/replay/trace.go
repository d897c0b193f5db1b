// Package replay runs loops' policies over a recorded trace with no
// cluster: the controller's own tick (input document, decision, guard,
// status), with targets simulated and overrides carried in memory.
package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// Tick is one line of a trace: when it happens, the metrics of that moment,
// and, optionally, the targets as observed then (they overwrite the
// simulated state).
type Tick struct {
	Time    time.Time                 `json:"time"`
	Metrics map[string]Metric         `json:"metrics"`
	Targets map[string]ObservedTarget `json:"targets,omitempty"`
}

// Metric is a number, or an object with "value" and optionally
// "age_seconds" and fields of its own.
type Metric struct {
	Value  *float64
	Age    time.Duration
	Fields map[string]any
}

// UnmarshalJSON accepts 2.4 or {"value": 2.4, "age_seconds": 0.5, "p95": 3}.
func (m *Metric) UnmarshalJSON(b []byte) error {
	var v float64
	if err := json.Unmarshal(b, &v); err == nil {
		m.Value = &v
		return nil
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("a metric is a number or an object with value, got %s", b)
	}
	m.Fields = map[string]any{}
	for k, x := range obj {
		switch k {
		case "value":
			if x == nil {
				continue
			}
			f, ok := x.(float64)
			if !ok {
				return fmt.Errorf("value must be a number, got %v", x)
			}
			m.Value = &f
		case "age_seconds":
			f, ok := x.(float64)
			if !ok {
				return fmt.Errorf("age_seconds must be a number, got %v", x)
			}
			m.Age = time.Duration(f * float64(time.Second))
		default:
			m.Fields[k] = x
		}
	}
	return nil
}

// ObservedTarget is a target's state as a trace records it, field by field
// as a decision sets them: {"replicas": 2, "bandwidth": {"egress": "500M"}}.
type ObservedTarget decision.Set

// UnmarshalJSON reads each field with its actuator, as the decision contract
// does.
func (o *ObservedTarget) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("a target is an object of fields, got %s", b)
	}
	var p decision.Parser
	set := ObservedTarget{}
	for _, field := range slices.Sorted(maps.Keys(raw)) {
		a, ok := builtin.Actuators.Get(field)
		if !ok {
			return fmt.Errorf("unknown target field %q (fields: %s)", field, strings.Join(builtin.Actuators.FieldNames(), ", "))
		}
		set[field] = a.Parse(&p, field, raw[field])
	}
	if problems := p.Problems(); len(problems) > 0 {
		return errors.New(problems[0].String())
	}
	*o = set
	return nil
}

// ReadTrace reads a trace: JSON lines, one tick each, in time order.
func ReadTrace(r io.Reader, name string) ([]Tick, error) {
	var last time.Time
	ticks, err := readJSONLines(r, name, func(t *Tick, _ string) error {
		if t.Time.IsZero() {
			return errors.New("a tick needs a time")
		}
		if !last.IsZero() && !t.Time.After(last) {
			return fmt.Errorf("time %s is not after the previous tick's", t.Time.Format(time.RFC3339Nano))
		}
		last = t.Time
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ticks) == 0 {
		return nil, fmt.Errorf("%s: no ticks", name)
	}
	return ticks, nil
}

// ReadLoop reads a ControlLoop manifest (YAML or JSON), refuses it as the
// API server would (the CRD's schema and CEL rules), and fills in the
// defaults the CRD would.
func ReadLoop(path string) (*v1alpha1.ControlLoop, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l v1alpha1.ControlLoop
	if err := yaml.UnmarshalStrict(b, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if l.Kind != "ControlLoop" || l.Name == "" {
		return nil, fmt.Errorf("%s: not a ControlLoop with a name", path)
	}
	if l.Namespace == "" {
		l.Namespace = "default"
	}
	if err := validateLoop(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var raw struct {
		Spec struct {
			Safety map[string]any `json:"safety"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	_, cooldown := raw.Spec.Safety["cooldown"]
	_, staleAfter := raw.Spec.Safety["staleAfter"]
	defaults(&l.Spec, cooldown, staleAfter)
	return &l, nil
}

// defaults are the CRD's (api/v1alpha1 markers): replay has no API server
// to apply them. cooldown and staleAfter may be set to zero on purpose, so
// the caller says whether they were set at all.
func defaults(s *v1alpha1.ControlLoopSpec, cooldownSet, staleAfterSet bool) {
	if s.Kind == "" {
		s.Kind = v1alpha1.Reactive
	}
	if s.State == "" {
		s.State = v1alpha1.Running
	}
	if s.Interval.Duration == 0 {
		s.Interval.Duration = time.Second
	}
	if s.HistoryLimit == 0 {
		s.HistoryLimit = 20
	}
	if !cooldownSet {
		s.Safety.Cooldown.Duration = 30 * time.Second
	}
	if !staleAfterSet {
		s.Safety.StaleAfter.Duration = 15 * time.Second
	}
	if s.Safety.MaxActions == 0 {
		s.Safety.MaxActions = 5
	}
	for i := range s.Targets {
		s.Targets[i].Ref.Kind = v1alpha1.TargetKind(workload.Of("", s.Targets[i].Ref).Kind)
		if s.Targets[i].OutOfBounds == "" {
			s.Targets[i].OutOfBounds = v1alpha1.Step
		}
	}
}
