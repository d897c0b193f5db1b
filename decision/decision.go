// Package decision is the decision contract: the shape a policy's output must have before
// anything may act on it, checked whole (a decision that breaks it is rejected in every part).
// The fields an action may set are the actuators' (Fields); this package knows none of them,
// and it imports neither OPA nor a Kubernetes client, so the guard and replay can share it.
package decision

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
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

// Set is what an action changes, by field ("replicas", "bandwidth", ...): each value as its
// field's parser returned it. A valid set has at least one field.
type Set map[string]any

// Fields are the fields an action's set may change, and how each is read: the actuators.
type Fields interface {
	// FieldNames are the fields, in the order they are applied.
	FieldNames() []string
	// ParseField checks a policy's value of field (at path in the decision) and returns it
	// typed; what is wrong goes to p. The result is ignored when p has new problems.
	ParseField(p *Parser, field, path string, raw any) any
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
	// Fields are what a set may change; with none, no action is valid.
	Fields Fields
	// Limits bound the decision's size; unset limits are the defaults.
	Limits Limits
}

// ContractFromInput derives the contract from an input document as the
// controller builds it: input.targets holds exactly the loop's declared
// targets, and input.loop.kind says whether it is Deliberative.
func ContractFromInput(input map[string]any, fields Fields) Contract {
	c := Contract{Targets: map[string]bool{}, AllowParams: true, Fields: fields}
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

// Validate checks a raw policy output (as decoded from OPA, numbers as
// json.Number) against the contract and returns it typed, or every problem
// found.
func Validate(raw any, c Contract) (Decision, []Problem) {
	v := validator{contract: c}
	d := v.decision(raw)
	v.limits(d)
	return d, v.problems
}

// Parser collects the problems of a decision as it is read, and reads the
// JSON values fields are made of, each problem naming where it is.
type Parser struct {
	problems []Problem
}

// Problems are the problems found so far.
func (p *Parser) Problems() []Problem { return p.problems }

// Fail records a problem at field (a JSON path into the decision).
func (p *Parser) Fail(field, format string, args ...any) {
	p.problems = append(p.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

type validator struct {
	Parser
	contract Contract
}

func (v *validator) fail(field, format string, args ...any) { v.Fail(field, format, args...) }

var decisionKeys = []string{"actions", "events", "state", "params"}

func (v *validator) decision(raw any) Decision {
	var d Decision
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail("", "decision must be an object, got %s", Describe(raw))
		return d
	}
	v.UnknownKeys("", obj, decisionKeys)
	lim := v.contract.Limits.OrDefaults()
	if a, ok := obj["actions"]; ok && v.counted("actions", a, lim.MaxActions) {
		d.Actions = v.actions(a)
	}
	if e, ok := obj["events"]; ok && v.counted("events", e, lim.MaxEvents) {
		d.Events = v.strings("events", e)
	}
	if s, ok := obj["state"]; ok {
		d.State = v.Object("state", s)
	}
	if p, ok := obj["params"]; ok {
		d.Params = v.Object("params", p)
		if d.Params != nil && !v.contract.AllowParams {
			v.fail("params", "only a Deliberative loop's decision may return params")
		}
	}
	return d
}

func (v *validator) actions(raw any) []Action {
	list, ok := raw.([]any)
	if !ok {
		v.fail("actions", "must be an array, got %s", Describe(raw))
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
		v.fail(field, "must be an object, got %s", Describe(raw))
		return a
	}
	v.UnknownKeys(field, obj, actionKeys)
	switch t, present := obj["target"]; {
	case !present:
		v.fail(field+".target", "is required")
	default:
		name, ok := t.(string)
		switch {
		case !ok:
			v.fail(field+".target", "must be a string, got %s", Describe(t))
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

func (v *validator) set(field string, raw any) Set {
	obj, ok := raw.(map[string]any)
	if !ok {
		v.fail(field, "must be an object, got %s", Describe(raw))
		return nil
	}
	var names []string
	if v.contract.Fields != nil {
		names = v.contract.Fields.FieldNames()
	}
	if len(obj) == 0 {
		v.fail(field, "must change something: one of %s", strings.Join(names, ", "))
	}
	v.UnknownKeys(field, obj, names)
	s := Set{}
	for _, name := range names {
		if r, ok := obj[name]; ok {
			before := len(v.problems)
			val := v.contract.Fields.ParseField(&v.Parser, name, field+"."+name, r)
			if len(v.problems) == before {
				s[name] = val
			}
		}
	}
	return s
}

// Quantity reads a non-negative Kubernetes quantity. It accepts quantity strings only:
// that is what the annotations and resource fields hold, and a bare number is ambiguous
// (bits or megabits? cores or millicores?).
func (p *Parser) Quantity(field string, raw any) *resource.Quantity {
	s, ok := raw.(string)
	if !ok {
		p.Fail(field, "must be a Kubernetes quantity string such as \"400M\" or \"128Mi\", got %s", Describe(raw))
		return nil
	}
	q, err := ParseQuantity(s)
	if err != nil {
		p.Fail(field, "%q is %v", s, err)
		return nil
	}
	if q.Sign() < 0 {
		p.Fail(field, "%q must not be negative", s)
		return nil
	}
	return &q
}

// MaxQuantityLength is the longest quantity string ParseQuantity reads.
const MaxQuantityLength = 64

// quantityExponent is a decimal exponent of 3 digits or more ("1e-999999999"): Kubernetes'
// ParseQuantity and arithmetic on such a quantity take time and memory in proportion to the
// exponent (seconds, then hours), so a policy could stall the controller with one string.
var quantityExponent = regexp.MustCompile(`[eE][+-]?[0-9]{3,}`)

// ParseQuantity reads a Kubernetes quantity from a string a policy or a workload's annotation
// gave, refusing what would make arithmetic on it unbounded: more than MaxQuantityLength
// characters, a decimal exponent of more than 2 digits, a value beyond ±(2^63-1). Its error
// completes "<the string> is ...".
func ParseQuantity(s string) (resource.Quantity, error) {
	switch {
	case len(s) > MaxQuantityLength:
		return resource.Quantity{}, fmt.Errorf("longer than %d characters", MaxQuantityLength)
	case quantityExponent.MatchString(s):
		return resource.Quantity{}, errors.New("out of range: a decimal exponent has at most 2 digits")
	}
	q, err := resource.ParseQuantity(s)
	switch {
	case err != nil:
		return resource.Quantity{}, errors.New("not a Kubernetes quantity")
	case q.CmpInt64(math.MaxInt64) > 0 || q.CmpInt64(math.MinInt64) < 0:
		return resource.Quantity{}, errors.New("out of range: beyond ±(2^63-1)")
	}
	return q, nil
}

// Number reads a JSON number of at least 0, exactly, as a quantity: decimals to 9 places
// (finer is rounded up, as Kubernetes quantities are), bounded as ParseQuantity bounds them.
func (p *Parser) Number(field string, raw any) *resource.Quantity {
	n, ok := raw.(json.Number)
	if !ok {
		p.Fail(field, "must be a number, got %s", Describe(raw))
		return nil
	}
	q, err := ParseQuantity(n.String())
	switch {
	case err != nil:
		p.Fail(field, "%s is %v", n, err)
		return nil
	case q.Sign() < 0:
		p.Fail(field, "must not be negative, got %s", n)
		return nil
	}
	return &q
}

// Integer reads a whole JSON number, at least minimum and within ±MaxInt32.
func (p *Parser) Integer(field string, raw any, minimum int64) *int64 {
	n, ok := raw.(json.Number)
	if !ok {
		p.Fail(field, "must be an integer, got %s", Describe(raw))
		return nil
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		p.Fail(field, "must be an integer, got %s", n)
		return nil
	}
	i := int64(f)
	if i < minimum {
		p.Fail(field, "must be at least %d, got %d", minimum, i)
		return nil
	}
	return &i
}

func (v *validator) strings(field string, raw any) []string {
	list, ok := raw.([]any)
	if !ok {
		v.fail(field, "must be an array of strings, got %s", Describe(raw))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			v.fail(fmt.Sprintf("%s[%d]", field, i), "must be a string, got %s", Describe(item))
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
		v.fail(field, "must be a string, got %s", Describe(raw))
	}
	return s
}

// Object reads a JSON object.
func (p *Parser) Object(field string, raw any) map[string]any {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(field, "must be an object, got %s", Describe(raw))
		return nil
	}
	return obj
}

// UnknownKeys records a problem for each key of obj (an object at field) that is not
// one of allowed, in key order.
func (p *Parser) UnknownKeys(field string, obj map[string]any, allowed []string) {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(allowed, k) {
			f := k
			if field != "" {
				f = field + "." + k
			}
			p.Fail(f, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
}

// Describe names a JSON value's type, with the value when short, for error messages.
func Describe(v any) string {
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
