package bundles

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Decision is a policy's output once it has passed the contract: the only
// shape the guard and the actuators ever see.
type Decision struct {
	Actions []Action `json:"actions"`
	Events  []string `json:"events"`
	// State replaces input.state at the next tick; nil means the policy
	// returned none and the previous state is kept.
	State map[string]any `json:"state,omitempty"`
	// Params is a merge patch for the supervised loop's overrides
	// (Deliberative loops only); nil when the policy returned none.
	Params map[string]any `json:"params,omitempty"`
}

// Action is one change a policy asks for on one of its loop's targets.
type Action struct {
	Target string `json:"target"`
	Metric string `json:"metric,omitempty"`
	Set    Set    `json:"set"`
	Reason string `json:"reason,omitempty"`
}

// Set is what an action changes; at least one field is set.
type Set struct {
	Replicas  *int64                        `json:"replicas,omitempty"`
	Bandwidth *Bandwidth                    `json:"bandwidth,omitempty"`
	Resources map[string]ContainerResources `json:"resources,omitempty"`
	HPA       *HPABounds                    `json:"hpa,omitempty"`
}

// Bandwidth is in bits per second, as Cilium reads its annotations.
type Bandwidth struct {
	Egress  *resource.Quantity `json:"egress,omitempty"`
	Ingress *resource.Quantity `json:"ingress,omitempty"`
}

// ContainerResources are the requests and limits of one container.
type ContainerResources struct {
	Requests map[string]resource.Quantity `json:"requests,omitempty"`
	Limits   map[string]resource.Quantity `json:"limits,omitempty"`
}

// HPABounds are the bounds of an autoscaling/v2 HorizontalPodAutoscaler.
type HPABounds struct {
	MinReplicas *int64 `json:"minReplicas,omitempty"`
	MaxReplicas *int64 `json:"maxReplicas,omitempty"`
}

// Problem is one way a decision breaks the contract.
type Problem struct {
	// Field is where, as a JSON path into the decision ("actions[0].set.replicas").
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// InvalidDecisionError rejects a decision whole: nothing of it may be acted on.
type InvalidDecisionError struct {
	Decision string // the decision path
	Revision string
	Problems []Problem
}

func (e *InvalidDecisionError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("invalid decision %s from %s: %s", e.Decision, e.Revision, strings.Join(parts, "; "))
}

// Contract is what a decision is checked against besides its own shape.
type Contract struct {
	// Targets are the names the decision may act on (the loop's spec.targets).
	Targets map[string]bool
	// AllowParams is true for Deliberative loops, the only ones that may
	// return params.
	AllowParams bool
}

// ContractFromInput derives the contract from an input document as the
// controller builds it: input.targets holds exactly the loop's declared
// targets, and input.loop.kind says whether it is Deliberative.
func ContractFromInput(input map[string]any) Contract {
	c := Contract{Targets: map[string]bool{}, AllowParams: true}
	if targets, ok := input["targets"].(map[string]any); ok {
		for name := range targets {
			c.Targets[name] = true
		}
	}
	if loop, ok := input["loop"].(map[string]any); ok {
		if kind, ok := loop["kind"].(string); ok {
			c.AllowParams = kind == "Deliberative"
		}
	}
	return c
}

// ValidateDecision checks a raw policy output (as decoded from OPA, numbers as
// json.Number) against the contract and returns it typed, or every problem
// found.
func ValidateDecision(raw any, c Contract) (Decision, []Problem) {
	v := validator{contract: c}
	d := v.decision(raw)
	return d, v.problems
}

type validator struct {
	contract Contract
	problems []Problem
}

func (v *validator) fail(field, format string, args ...any) {
	v.problems = append(v.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

var decisionKeys = []string{"actions", "events", "state", "params"}

func (v *validator) decision(raw any) Decision {
	var d Decision
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail("", "decision must be an object, got %s", describe(raw))
		return d
	}
	v.unknownKeys("", obj, decisionKeys)
	if a, ok := obj["actions"]; ok {
		d.Actions = v.actions(a)
	}
	if e, ok := obj["events"]; ok {
		d.Events = v.strings("events", e)
	}
	if s, ok := obj["state"]; ok {
		d.State = v.object("state", s)
	}
	if p, ok := obj["params"]; ok {
		d.Params = v.object("params", p)
		if d.Params != nil && !v.contract.AllowParams {
			v.fail("params", "only a Deliberative loop's decision may return params")
		}
	}
	return d
}

func (v *validator) actions(raw any) []Action {
	list, ok := raw.([]any)
	if !ok {
		v.fail("actions", "must be an array, got %s", describe(raw))
		return nil
	}
	out := make([]Action, 0, len(list))
	for i, item := range list {
		out = append(out, v.action(fmt.Sprintf("actions[%d]", i), item))
	}
	return out
}

var actionKeys = []string{"target", "metric", "set", "reason"}

func (v *validator) action(field string, raw any) Action {
	var a Action
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object, got %s", describe(raw))
		return a
	}
	v.unknownKeys(field, obj, actionKeys)
	switch t, present := obj["target"]; {
	case !present:
		v.fail(field+".target", "is required")
	default:
		name, ok := t.(string)
		switch {
		case !ok:
			v.fail(field+".target", "must be a string, got %s", describe(t))
		case !v.contract.Targets[name]:
			v.fail(field+".target", "%q is not one of the loop's targets %s", name, targetList(v.contract.Targets))
		default:
			a.Target = name
		}
	}
	a.Metric = v.optionalString(field+".metric", obj["metric"])
	a.Reason = v.optionalString(field+".reason", obj["reason"])
	if s, present := obj["set"]; present {
		a.Set = v.set(field+".set", s)
	} else {
		v.fail(field+".set", "is required")
	}
	return a
}

var setKeys = []string{"replicas", "bandwidth", "resources", "hpa"}

func (v *validator) set(field string, raw any) Set {
	var s Set
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object, got %s", describe(raw))
		return s
	}
	if len(obj) == 0 {
		v.fail(field, "must change something: one of %s", strings.Join(setKeys, ", "))
	}
	v.unknownKeys(field, obj, setKeys)
	if r, ok := obj["replicas"]; ok {
		s.Replicas = v.integer(field+".replicas", r, 0)
	}
	if b, ok := obj["bandwidth"]; ok {
		s.Bandwidth = v.bandwidth(field+".bandwidth", b)
	}
	if r, ok := obj["resources"]; ok {
		s.Resources = v.resources(field+".resources", r)
	}
	if h, ok := obj["hpa"]; ok {
		s.HPA = v.hpa(field+".hpa", h)
	}
	return s
}

func (v *validator) bandwidth(field string, raw any) *Bandwidth {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object with egress and/or ingress, got %s", describe(raw))
		return nil
	}
	if len(obj) == 0 {
		v.fail(field, "must set egress and/or ingress")
	}
	v.unknownKeys(field, obj, []string{"egress", "ingress"})
	b := &Bandwidth{}
	if e, ok := obj["egress"]; ok {
		b.Egress = v.quantity(field+".egress", e)
	}
	if i, ok := obj["ingress"]; ok {
		b.Ingress = v.quantity(field+".ingress", i)
	}
	return b
}

func (v *validator) resources(field string, raw any) map[string]ContainerResources {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object keyed by container name, got %s", describe(raw))
		return nil
	}
	if len(obj) == 0 {
		v.fail(field, "must name at least one container")
	}
	out := make(map[string]ContainerResources, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		cf := field + "." + name
		c, ok := obj[name].(map[string]any)
		if !ok {
			v.fail(cf, "must be an object with requests and/or limits, got %s", describe(obj[name]))
			continue
		}
		if len(c) == 0 {
			v.fail(cf, "must set requests and/or limits")
		}
		v.unknownKeys(cf, c, []string{"requests", "limits"})
		var cr ContainerResources
		if r, ok := c["requests"]; ok {
			cr.Requests = v.resourceList(cf+".requests", r)
		}
		if l, ok := c["limits"]; ok {
			cr.Limits = v.resourceList(cf+".limits", l)
		}
		out[name] = cr
	}
	return out
}

func (v *validator) resourceList(field string, raw any) map[string]resource.Quantity {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object of resource quantities, got %s", describe(raw))
		return nil
	}
	out := make(map[string]resource.Quantity, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if q := v.quantity(field+"."+name, obj[name]); q != nil {
			out[name] = *q
		}
	}
	return out
}

func (v *validator) hpa(field string, raw any) *HPABounds {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object with minReplicas and/or maxReplicas, got %s", describe(raw))
		return nil
	}
	if len(obj) == 0 {
		v.fail(field, "must set minReplicas and/or maxReplicas")
	}
	v.unknownKeys(field, obj, []string{"minReplicas", "maxReplicas"})
	h := &HPABounds{}
	if m, ok := obj["minReplicas"]; ok {
		h.MinReplicas = v.integer(field+".minReplicas", m, 1)
	}
	if m, ok := obj["maxReplicas"]; ok {
		h.MaxReplicas = v.integer(field+".maxReplicas", m, 1)
	}
	if h.MinReplicas != nil && h.MaxReplicas != nil && *h.MinReplicas > *h.MaxReplicas {
		v.fail(field, "minReplicas %d is above maxReplicas %d", *h.MinReplicas, *h.MaxReplicas)
	}
	return h
}

// quantity accepts Kubernetes quantity strings only: that is what the
// annotations and resource fields hold, and a bare number is ambiguous
// (bits or megabits? cores or millicores?).
func (v *validator) quantity(field string, raw any) *resource.Quantity {
	s, ok := raw.(string)
	if !ok {
		v.fail(field, "must be a Kubernetes quantity string such as \"400M\" or \"128Mi\", got %s", describe(raw))
		return nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		v.fail(field, "%q is not a Kubernetes quantity", s)
		return nil
	}
	if q.Sign() < 0 {
		v.fail(field, "%q must not be negative", s)
		return nil
	}
	return &q
}

func (v *validator) integer(field string, raw any, minimum int64) *int64 {
	n, ok := raw.(json.Number)
	if !ok {
		v.fail(field, "must be an integer, got %s", describe(raw))
		return nil
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		v.fail(field, "must be an integer, got %s", n)
		return nil
	}
	i := int64(f)
	if i < minimum {
		v.fail(field, "must be at least %d, got %d", minimum, i)
		return nil
	}
	return &i
}

func (v *validator) strings(field string, raw any) []string {
	list, ok := raw.([]any)
	if !ok {
		v.fail(field, "must be an array of strings, got %s", describe(raw))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			v.fail(fmt.Sprintf("%s[%d]", field, i), "must be a string, got %s", describe(item))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (v *validator) optionalString(field string, raw any) string {
	if raw == nil {
		return ""
	}
	s, ok := raw.(string)
	if !ok {
		v.fail(field, "must be a string, got %s", describe(raw))
	}
	return s
}

func (v *validator) object(field string, raw any) map[string]any {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object, got %s", describe(raw))
		return nil
	}
	return obj
}

func (v *validator) unknownKeys(field string, obj map[string]any, allowed []string) {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(allowed, k) {
			f := k
			if field != "" {
				f = field + "." + k
			}
			v.fail(f, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
}

// describe names a JSON value's type, with the value when short, for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean %t", x)
	case json.Number:
		return "number " + x.String()
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return fmt.Sprintf("string %q", x)
	case []any:
		return fmt.Sprintf("array of %d", len(x))
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func targetList(targets map[string]bool) string {
	if len(targets) == 0 {
		return "(the input names no targets)"
	}
	return "[" + strings.Join(slices.Sorted(maps.Keys(targets)), ", ") + "]"
}
