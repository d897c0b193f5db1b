// Package external is the actuator of External targets: managed systems outside Kubernetes
// (Lupus's egress agents) with named numeric settings. A decision sets
// {"external": {"<setting>": <number>}}; the guard bounds each setting like any other value;
// the actuator POSTs the change to the target's URL as JSON, signed (package signature), with
// an idempotency key, a timeout and retries with backoff. The current values come from the
// system's own answer to a GET on the same URL or, when it does not answer, from what the loop
// last applied (status.targets[].applied).
package external

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
)

// Field is the key of this actuator: "external": {"rate": 40} in a set.
const Field = "external"

// Settings are numeric settings by name: a decision's value (the names it sets), or a
// target's current state (the names whose value is known). They encode as JSON numbers.
type Settings map[string]resource.Quantity

// MarshalJSON writes {"<name>": <number>}, names in order.
func (s Settings) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.numbers())
}

func (s Settings) numbers() map[string]json.Number {
	out := make(map[string]json.Number, len(s))
	for name, q := range s {
		out[name] = number(q)
	}
	return out
}

// number writes a quantity as a plain decimal JSON number: "500m" is 0.5, "2k" 2000.
func number(q resource.Quantity) json.Number {
	s := q.AsDec().String() // AsDec changes q's representation, not its value: q is a copy
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return json.Number(s)
}

// settingName is the CRD's pattern of a setting's name.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// Actuator sets the settings of External targets, within spec.targets[].external.settings.
// Its value and its current state are Settings. It keeps the signing keys it read, for a
// while, and an HTTP client per CA bundle; New makes one.
type Actuator struct {
	mu      sync.Mutex
	keys    map[string]cachedKey    // by namespace/name of the Secret
	clients map[string]*http.Client // by the SHA-256 of the CA bundle
	backoff time.Duration           // the wait before the first retry; each next one waits twice as long
}

// New returns an Actuator.
func New() *Actuator {
	return &Actuator{keys: map[string]cachedKey{}, clients: map[string]*http.Client{}, backoff: firstBackoff}
}

// Field implements actuators.Actuator.
func (*Actuator) Field() string { return Field }

// ActsOutsideKubernetes implements actuators.ExternalActuator.
func (*Actuator) ActsOutsideKubernetes() {}

// Parse takes an object of at least one setting, each a number of at least 0.
func (*Actuator) Parse(p *decision.Parser, path string, raw any) any {
	if s := parse(p, path, raw); s != nil {
		return s
	}
	return nil
}

// parse reads settings at path; nil when raw is not an object.
func parse(p *decision.Parser, path string, raw any) Settings {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.Fail(path, "must be an object of settings, such as {\"rate\": 40}, got %s", decision.Describe(raw))
		return nil
	}
	if len(obj) == 0 {
		p.Fail(path, "must set at least one setting")
	}
	out := make(Settings, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		field := path + "." + name
		if len(name) > 63 || !settingName.MatchString(name) {
			p.Fail(field, "is not a setting's name (a letter or _, then letters, digits, _ . or -, at most 63)")
			continue
		}
		if q := p.Number(field, obj[name]); q != nil {
			out[name] = *q
		}
	}
	return out
}

// Read is each declared setting's current value: the system's answer to a GET, else what the
// loop last applied, else unknown (left out). It never fails: a system that does not answer
// is acted on (and the action's failure recorded) from what the loop knows.
func (a *Actuator) Read(ctx context.Context, c client.Reader, t *actuators.Target) (any, error) {
	spec := t.Spec.External
	if spec == nil {
		return Settings{}, nil
	}
	known := Settings{}
	if last, ok := t.Applied[Field]; ok {
		var p decision.Parser
		if s := parse(&p, Field, last); len(p.Problems()) == 0 {
			known = s
		}
	}
	if answer, err := a.current(ctx, c, t); err == nil {
		maps.Copy(known, answer)
	}
	out := Settings{}
	for _, s := range spec.Settings {
		if q, ok := known[s.Name]; ok {
			out[s.Name] = q
		}
	}
	return out, nil
}

// Doc is {"<setting>": <number>} of the settings whose value is known.
func (*Actuator) Doc(current any) any {
	cur, _ := current.(Settings)
	doc := map[string]any{}
	for name, n := range cur.numbers() {
		doc[name] = n
	}
	return doc
}

// Fit clamps each setting to its bounds and maxStep from its current value; a setting the
// target does not declare is refused.
func (*Actuator) Fit(f *actuators.Fit, t *actuators.Target, want any) any {
	spec := t.Spec.External
	if spec == nil {
		f.Refuse("external: the target declares no external settings")
		return nil
	}
	current, _ := t.Current[Field].(Settings)
	w := want.(Settings)
	out := Settings{}
	for _, name := range slices.Sorted(maps.Keys(w)) {
		i := slices.IndexFunc(spec.Settings, func(s v1alpha1.ExternalSetting) bool { return s.Name == name })
		if i < 0 {
			f.Refuse("external: the target declares no setting %s (it declares %s)", name, declared(spec))
			return nil
		}
		var cur *resource.Quantity
		if q, ok := current[name]; ok {
			cur = &q
		}
		if q := f.Quantity(w[name], spec.Settings[i].QuantityRange, cur, "external "+name); q != nil {
			out[name] = *q
		}
	}
	return out
}

func declared(spec *v1alpha1.ExternalTarget) string {
	names := make([]string, len(spec.Settings))
	for i, s := range spec.Settings {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// Apply POSTs the settings to the target's system.
func (a *Actuator) Apply(ctx context.Context, c client.Client, t *actuators.Target, value any) (bool, error) {
	return a.post(ctx, c, t, value.(Settings))
}

// Simulate sets the settings given over the current ones; replay starts with none known.
func (*Actuator) Simulate(_ *v1alpha1.TargetSpec, current, value any) any {
	next := Settings{}
	if cur, ok := current.(Settings); ok {
		maps.Copy(next, cur)
	}
	if v, ok := value.(Settings); ok {
		maps.Copy(next, v)
	}
	return next
}
