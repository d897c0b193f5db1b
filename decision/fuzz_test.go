package decision_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/actuators/external"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/resources"
	. "governor.dev/governor/decision"
)

// FuzzValidate feeds the decision contract any JSON value and asserts: it never panics; every
// problem says where (a JSON path into the decision) and what, on one line; a decision it
// admits acts only on the loop's targets, sets at least one field per action, each value of
// its actuator's type and range, and params only for a Deliberative loop; and what it admits,
// encoded again, is admitted again as the same decision.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"actions": [{"target": "web", "metric": "cpu", "reason": "r", "set": {"replicas": 4}}], "events": ["High cpu"], "state": {"ewma": 1.7}}`,
		`{"actions": [{"target": "db", "set": {"bandwidth": {"egress": "400M", "ingress": "1G"}}}]}`,
		`{"actions": [{"target": "web", "set": {"resources": {"app": {"requests": {"cpu": "350m", "memory": "192Mi"}, "limits": {"memory": "256Mi"}}}}}]}`,
		`{"actions": [{"target": "db", "set": {"hpa": {"minReplicas": 2, "maxReplicas": 8}, "replicas": 3.0}}], "params": {"priorities": ["memory"]}}`,
		`{"actions": [{"target": "cache", "set": {"replicas": -1, "bandwidth": "fast"}}], "extra": 1}`,
		`{"actions": [{"target": "web", "set": {"replicas": 1e400}}, {"set": {}}, 3]}`,
		`{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "1e-2000000000"}}}]}`,
		`{"actions": [{"target": "db", "set": {"external": {"rate": 40, "ratio": 0.25, "big": 1e18, "tiny": 1e-12}}}]}`,
		`{"actions": [{"target": "db", "set": {"external": {"rate": -1, "a b": 2, "s": "40", "huge": 1e400}}}, {"target": "web", "set": {"external": {}}}]}`,
		`{"events": [1, "a"], "state": [], "params": null}`,
		`[]`, `null`, `"decision"`, `{}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, doc string, deliberative bool) {
		raw, ok := decodeJSON(doc)
		if !ok {
			return // the engine only ever gives JSON values
		}
		contract := Contract{Targets: map[string]bool{"web": true, "db": true}, AllowParams: deliberative, Fields: builtin.Actuators}
		d, problems := Validate(raw, contract)
		for _, p := range problems {
			if p.Message == "" || strings.ContainsAny(p.String(), "\n\r") {
				t.Fatalf("problem without a one-line message: %q", p.String())
			}
			if p.Field != "" && !hasPrefix(p.Field, "actions", "events", "state", "params") && !isTopKey(raw, p.Field) {
				t.Fatalf("problem at %q, not a path into the decision", p.Field)
			}
		}
		if len(problems) > 0 {
			return
		}
		checkAdmitted(t, d, contract)
		again, err := json.Marshal(wire(d))
		if err != nil {
			t.Fatalf("encoding an admitted decision: %v", err)
		}
		raw2, _ := decodeJSON(string(again))
		d2, problems := Validate(raw2, contract)
		if len(problems) > 0 {
			t.Fatalf("admitted %s, but not once encoded again as %s: %v", doc, again, problems)
		}
		if again2, _ := json.Marshal(wire(d2)); !bytes.Equal(again, again2) {
			t.Fatalf("admitted %s differently once encoded again: %s, then %s", doc, again, again2)
		}
	})
}

// wire is a decision as a policy would write it: no null lists.
func wire(d Decision) Decision {
	if d.Actions == nil {
		d.Actions = []Action{}
	}
	if d.Events == nil {
		d.Events = []string{}
	}
	return d
}

func decodeJSON(s string) (any, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	return v, true
}

func hasPrefix(field string, prefixes ...string) bool {
	for _, p := range prefixes {
		if field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[") {
			return true
		}
	}
	return false
}

// isTopKey: an unknown top-level key is its own path.
func isTopKey(raw any, field string) bool {
	obj, ok := raw.(map[string]any)
	if !ok {
		return false
	}
	_, ok = obj[field]
	return ok
}

func checkAdmitted(t *testing.T, d Decision, c Contract) {
	t.Helper()
	if d.Params != nil && !c.AllowParams {
		t.Fatalf("params admitted for a Reactive loop")
	}
	for i, a := range d.Actions {
		if !c.Targets[a.Target] {
			t.Fatalf("actions[%d] on %q, not a target of the loop", i, a.Target)
		}
		if len(a.Set) == 0 {
			t.Fatalf("actions[%d] sets nothing", i)
		}
		for field, v := range a.Set {
			checkSetValue(t, field, v)
		}
	}
}

func checkSetValue(t *testing.T, field string, v any) {
	t.Helper()
	switch field {
	case "replicas":
		n, ok := v.(int64)
		if !ok || n < 0 || n > math.MaxInt32 {
			t.Fatalf("replicas %v (%T) admitted", v, v)
		}
	case "hpa":
		b, ok := v.(hpa.Bounds)
		if !ok || b.MinReplicas == nil && b.MaxReplicas == nil ||
			b.MinReplicas != nil && (*b.MinReplicas < 1 || *b.MinReplicas > math.MaxInt32) ||
			b.MaxReplicas != nil && (*b.MaxReplicas < 1 || *b.MaxReplicas > math.MaxInt32) ||
			b.MinReplicas != nil && b.MaxReplicas != nil && *b.MinReplicas > *b.MaxReplicas {
			t.Fatalf("hpa %+v admitted", v)
		}
	case "bandwidth":
		b, ok := v.(bandwidth.Value)
		if !ok || b.Egress == nil && b.Ingress == nil || b.Egress != nil && b.Egress.Sign() < 0 || b.Ingress != nil && b.Ingress.Sign() < 0 {
			t.Fatalf("bandwidth %+v admitted", v)
		}
	case "resources":
		cs, ok := v.(resources.Containers)
		if !ok || len(cs) == 0 {
			t.Fatalf("resources %+v admitted", v)
		}
		for name, c := range cs {
			if c.Requests == nil && c.Limits == nil {
				t.Fatalf("container %s admitted with neither requests nor limits", name)
			}
			for res, q := range c.Requests {
				if q.Sign() < 0 {
					t.Fatalf("%s requests.%s %s admitted", name, res, q.String())
				}
			}
			for res, q := range c.Limits {
				if q.Sign() < 0 {
					t.Fatalf("%s limits.%s %s admitted", name, res, q.String())
				}
			}
		}
	case "external":
		s, ok := v.(external.Settings)
		if !ok || len(s) == 0 {
			t.Fatalf("external %+v admitted", v)
		}
		for name, q := range s {
			if name == "" || len(name) > 63 || q.Sign() < 0 {
				t.Fatalf("external setting %q: %s admitted", name, q.String())
			}
		}
	default:
		t.Fatalf("field %q admitted, which no actuator has", field)
	}
}
