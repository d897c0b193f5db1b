// Package actuators is how a loop changes what it governs: one Actuator per field of a target
// ("replicas", "bandwidth", "resources", "hpa", ...), each a package of its own, all listed
// in one Registry (package builtin). The decision contract, the guard, the controller and
// governor replay go through the Registry and know no actuator by name.
//
// It also holds the way every actuator writes: server-side apply as field manager
// "governor", forced, with a resourceVersion precondition and retry on conflict.
//
// Server-side apply and "leave the rest alone": an apply as field manager "governor" claims
// exactly the fields it sends, and removes any field "governor" owned before but no longer
// sends. So an actuator never builds its apply configuration from scratch: it extracts what
// "governor" owns now (client-go's Extract* functions, with the current values), changes the
// fields it was asked to change and applies that. The extraction is only valid for the
// resourceVersion it was read at, so the apply carries that resourceVersion as a precondition
// and a conflict reads again (RetryOnConflict).
package actuators

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// Actuator owns one field of a loop's targets: its key in a decision's set, in
// input.targets.<name> and in the target's bounds (spec.targets[].<field>).
type Actuator interface {
	// Field is the key, e.g. "replicas".
	Field() string
	// Parse checks a policy's value of the field (at path in the decision) against the
	// contract and returns it typed; problems go to p.
	Parse(p *decision.Parser, path string, raw any) any
	// Read reads the field's current state on a target that exists (t.Object is its
	// workload as read this tick, the cache's own object: read it, never change it, and
	// copy what the state keeps of it that could be changed later).
	Read(ctx context.Context, c client.Reader, t *Target) (any, error)
	// Doc is a current state as input.targets.<name>.<field> shows it; nil leaves it out.
	Doc(current any) any
	// Fit fits a parsed value into the target's bounds (t.Spec) from its current state
	// (t.Current) and returns the value to apply; clamps, a refusal and whether anything
	// changes go to f. A target that declares no bounds for the field is refused.
	Fit(f *Fit, t *Target, want any) any
	// Apply writes a fitted value to the target and says whether it changed anything, also
	// when it fails part-way.
	Apply(ctx context.Context, c client.Client, t *Target, value any) (bool, error)
	// Simulate is the state once value is applied to current, for governor replay; with
	// value nil it is the state replay starts a target from (current is then nil too).
	Simulate(spec *v1alpha1.TargetSpec, current, value any) any
}

// Target is one of a loop's targets at a tick: what it names, what the loop declares of it,
// and its current state.
type Target struct {
	// Name is the loop's name for it (spec.targets[].name).
	Name string
	// Workload is the workload it names.
	Workload workload.Ref
	// Spec is the loop's declaration: the reference and the bounds.
	Spec *v1alpha1.TargetSpec
	// Exists is false when the workload is not there: nothing may act on it.
	Exists bool
	// Object is the workload as read this tick, shared with the cache (workload.View):
	// read only. nil in governor replay.
	Object client.Object
	// Current is each field's current state, as its actuator read it.
	Current map[string]any
	// Applied is what the loop last applied to an External target, by field
	// (status.targets[].applied, numbers as json.Number): the current state of
	// a system that does not say its own. Nil for workloads, and when none.
	Applied map[string]any
}

// ExternalActuator is an actuator of External targets (managed systems outside Kubernetes,
// spec.targets[].ref.kind External). Such a target has no workload: only these actuators
// read, document and act on it, and the others only on workloads.
type ExternalActuator interface {
	Actuator
	// ActsOutsideKubernetes marks the actuator as one of External targets.
	ActsOutsideKubernetes()
}

// ObjectActuator is an actuator whose Read depends on the workload object (t.Object) and the
// target's spec alone: a workload read again at the same resourceVersion, under the same
// spec, reads the same, and Registry.Read takes its state from the tick before.
type ObjectActuator interface {
	Actuator
	// ReadsObjectOnly marks the actuator as one whose state is the object's.
	ReadsObjectOnly()
}

// Last is what Registry.Read takes from a target as read at the tick before: its workload's
// identity and version, its state and its input document (only read). The caller vouches
// that the target's spec is the same (the loop's generation is). It keeps no object, so
// that holding it keeps no copy of a workload alive.
type Last struct {
	Workload        workload.Ref
	UID             types.UID
	ResourceVersion string
	Current         map[string]any
	Doc             map[string]any
}

// LastOf is what Last keeps of a target read with the document doc.
func LastOf(t *Target, doc map[string]any) Last {
	last := Last{Workload: t.Workload, Current: t.Current, Doc: doc}
	if t.Object != nil {
		last.UID, last.ResourceVersion = t.Object.GetUID(), t.Object.GetResourceVersion()
	}
	return last
}

// IsExternal says whether a target is a managed system outside Kubernetes.
func IsExternal(spec *v1alpha1.TargetSpec) bool { return spec.Ref.Kind == v1alpha1.TargetExternal }

// actsOn says whether an actuator reads and documents a kind of target.
func actsOn(a Actuator, spec *v1alpha1.TargetSpec) bool {
	_, external := a.(ExternalActuator)
	return external == IsExternal(spec)
}

// Tick says which tick of which loop an action is carried out at: an actuator that asks a
// system outside Kubernetes for a change names the change by it (an idempotency key).
type Tick struct {
	Loop   types.NamespacedName
	UID    types.UID
	Number int64
	// Intent is when the tick recorded that it changes its targets
	// (status.targets[].lastChange), before acting: a crash before the
	// tick is recorded makes its number come again, never this time.
	Intent time.Time
}

type tickKey struct{}

// WithTick is ctx carrying the tick its actions are carried out at.
func WithTick(ctx context.Context, t Tick) context.Context {
	return context.WithValue(ctx, tickKey{}, t)
}

// TickOf is the tick ctx carries, if any.
func TickOf(ctx context.Context) (Tick, bool) {
	t, ok := ctx.Value(tickKey{}).(Tick)
	return t, ok
}

// Registry is the actuators a controller has, in the order a set's fields are applied.
type Registry struct {
	list []Actuator
}

// NewRegistry lists actuators; a field may appear once.
func NewRegistry(actuators ...Actuator) *Registry {
	seen := map[string]bool{}
	for _, a := range actuators {
		if seen[a.Field()] {
			panic(fmt.Sprintf("actuators: field %q registered twice", a.Field()))
		}
		seen[a.Field()] = true
	}
	return &Registry{list: slices.Clone(actuators)}
}

// All are the actuators in order.
func (r *Registry) All() []Actuator { return r.list }

// Get is the actuator of a field.
func (r *Registry) Get(field string) (Actuator, bool) {
	for _, a := range r.list {
		if a.Field() == field {
			return a, true
		}
	}
	return nil, false
}

// FieldNames are the fields, in order (decision.Fields).
func (r *Registry) FieldNames() []string {
	out := make([]string, len(r.list))
	for i, a := range r.list {
		out[i] = a.Field()
	}
	return out
}

// ParseField parses a field's value with its actuator (decision.Fields).
func (r *Registry) ParseField(p *decision.Parser, field, path string, raw any) any {
	a, ok := r.Get(field)
	if !ok {
		p.Fail(path, "no actuator for %s", field)
		return nil
	}
	return a.Parse(p, path, raw)
}

// Read reads a target's current state with every actuator of its kind and the input
// document of it (input.targets.<name>). A workload that does not exist is a Target with
// Exists false; an External target always exists (its system may not answer: acting on it
// then fails). recorded is what the loop's status keeps of the target, nil when nothing.
//
// An ObjectActuator's state and document are last's when the workload reads at the same
// UID and resourceVersion as last's, and the document is last's whole when the other
// actuators' read the same too: most ticks change no workload, and building the states and
// documents of a thousand loops' targets again at every tick was a quarter of what they
// allocated.
func (r *Registry) Read(ctx context.Context, c client.Reader, namespace string, spec *v1alpha1.TargetSpec, recorded *v1alpha1.TargetStatus, last Last) (*Target, map[string]any, error) {
	t := &Target{Name: spec.Name, Workload: workload.Of(namespace, spec.Ref), Spec: spec, Current: make(map[string]any, len(r.list))}
	if IsExternal(spec) {
		t.Exists, t.Applied = true, applied(recorded)
	} else {
		obj, err := workload.View(ctx, c, t.Workload)
		if workload.IsNotFound(err) {
			return t, r.newDoc(t, nil, Last{}), nil
		}
		if err != nil {
			return nil, nil, err
		}
		t.Exists, t.Object = true, obj
	}
	reused := last.sameObject(t)
	unchanged := reused
	var buf [8]fieldDoc
	read := buf[:0] // the fields read again, and their documents
	for _, a := range r.list {
		if !actsOn(a, spec) {
			continue
		}
		if _, ok := a.(ObjectActuator); ok && reused {
			t.Current[a.Field()] = last.Current[a.Field()]
			continue
		}
		cur, err := a.Read(ctx, c, t)
		if err != nil {
			return nil, nil, err
		}
		t.Current[a.Field()] = cur
		d := a.Doc(cur)
		read = append(read, fieldDoc{a.Field(), d})
		unchanged = unchanged && SameDoc(d, last.Doc[a.Field()])
	}
	if unchanged {
		return t, last.Doc, nil
	}
	if !reused {
		last = Last{}
	}
	return t, r.newDoc(t, read, last), nil
}

// fieldDoc is a field's document (nil: left out).
type fieldDoc struct {
	field string
	doc   any
}

// newDoc is a target's document: the fields read, and the others' from last (the
// ObjectActuators' when their states were last's).
func (r *Registry) newDoc(t *Target, read []fieldDoc, last Last) map[string]any {
	doc := make(map[string]any, 4+len(r.list))
	doc["kind"], doc["namespace"], doc["name"], doc["exists"] = t.Workload.Kind, t.Workload.Namespace, t.Workload.Name, t.Exists
	if !t.Exists {
		return doc
	}
	for _, a := range r.list {
		if d, ok := last.Doc[a.Field()]; ok && actsOn(a, t.Spec) {
			doc[a.Field()] = d
		}
	}
	for _, f := range read {
		if f.doc == nil {
			delete(doc, f.field)
		} else {
			doc[f.field] = f.doc
		}
	}
	return doc
}

// sameObject says whether a target's workload reads as the one last read: the same
// workload, object (UID) and resourceVersion.
func (last Last) sameObject(t *Target) bool {
	if t.Object == nil || last.Workload != t.Workload {
		return false
	}
	rv := t.Object.GetResourceVersion()
	return rv != "" && rv == last.ResourceVersion && t.Object.GetUID() == last.UID
}

// applied decodes what a target's status says was last applied to it; nil when nothing is,
// or when it is not a JSON object (a status written by hand): then nothing is known.
func applied(recorded *v1alpha1.TargetStatus) map[string]any {
	if recorded == nil || recorded.Applied == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(recorded.Applied.Raw))
	dec.UseNumber()
	var out map[string]any
	if dec.Decode(&out) != nil {
		return nil
	}
	return out
}

// Doc is the input document of a target whose state replay simulates.
func (r *Registry) Doc(t *Target) map[string]any {
	doc := map[string]any{"kind": t.Workload.Kind, "namespace": t.Workload.Namespace, "name": t.Workload.Name, "exists": t.Exists}
	for _, a := range r.list {
		if t.Spec != nil && !actsOn(a, t.Spec) {
			continue
		}
		if d := a.Doc(t.Current[a.Field()]); d != nil {
			doc[a.Field()] = d
		}
	}
	return doc
}

// Apply carries out a guarded set on a target, field by field in order, and returns the
// part of it that was applied: every field written, or found already so, before an error,
// and the failing field too when it changed something before failing.
func (r *Registry) Apply(ctx context.Context, c client.Client, t *Target, set decision.Set) (decision.Set, error) {
	applied := decision.Set{}
	for _, a := range r.list {
		v, ok := set[a.Field()]
		if !ok {
			continue
		}
		changed, err := a.Apply(ctx, c, t, v)
		if err == nil || changed {
			applied[a.Field()] = v
		}
		if err != nil {
			return applied, fmt.Errorf("%s: %w", a.Field(), err)
		}
	}
	return applied, nil
}
