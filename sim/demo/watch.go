package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/sim"
)

// sample is what the demo reads of the factory and its loops at one time.
type sample struct {
	T time.Time
	// PlantJitter is robot-control's jitter as the plant makes it, in ms.
	PlantJitter float64
	// SeenJitter is the smoothed jitter factory-qos decided on (its policy's EWMA, in
	// status.state), in ms; NaN before its first decision.
	SeenJitter float64
	// Egress is the egress bandwidth granted to each Pod of a best-effort Deployment
	// (governor.dev/egress-bandwidth), in Mbit/s, by Deployment; NaN when none is recorded.
	Egress map[string]float64
	// Pods counts each Deployment's Running Pods.
	Pods map[string]int
	// LinkEgress is what the best-effort Pods may send together, as the plant reads it, in
	// Mbit/s.
	LinkEgress float64
	// Web is the web tier: spec.replicas and the app container's memory.
	WebReplicas                int32
	WebMemRequest, WebMemLimit resource.Quantity
	// Priorities are factory-scaling's effective priorities (spec params with overrides).
	Priorities []string
	// OverridesBy names who wrote factory-scaling's overrides, "" when none.
	OverridesBy string
	// CPU and Memory are the web tier's load as last observed, in %.
	CPU, Memory float64
	// Err is why the API server could not be read, "" when it could.
	Err string
}

// note is a change worth a line: a loop acted, priorities were rewritten, the scenario
// moved on.
type note struct {
	T    time.Time
	Text string
}

// recorder reads the factory and the loops, keeps every loop's history entries (status
// keeps only the last historyLimit), the samples for the plot and the notes.
type recorder struct {
	c     client.Reader
	plant *sim.Bandwidth
	start time.Time // the loops' creation

	samples []sample
	loops   map[string]*v1alpha1.ControlLoop
	history map[string]map[int64]v1alpha1.HistoryEntry
	notes   []note

	// what notes were made of, to make them once
	lastTick     map[string]int64
	lastDecision map[string]string
	lastError    map[string]string
	lastPrio     []string
	cpu, memory  float64
}

func newRecorder(c client.Reader, plant *sim.Bandwidth) *recorder {
	return &recorder{
		c: c, plant: plant,
		loops:        map[string]*v1alpha1.ControlLoop{},
		history:      map[string]map[int64]v1alpha1.HistoryEntry{},
		lastTick:     map[string]int64{},
		lastDecision: map[string]string{},
		lastError:    map[string]string{},
		cpu:          math.NaN(), memory: math.NaN(),
	}
}

// setLoad records the load last observed.
func (r *recorder) setLoad(cpu, memory float64) { r.cpu, r.memory = cpu, memory }

// note adds a line to the notes.
func (r *recorder) note(now time.Time, format string, args ...any) {
	r.notes = append(r.notes, note{T: now, Text: fmt.Sprintf(format, args...)})
}

// poll reads the loops, the Deployments and the Pods once, and records a sample.
func (r *recorder) poll(ctx context.Context, now time.Time) sample {
	s := sample{T: now, SeenJitter: math.NaN(), Egress: map[string]float64{}, Pods: map[string]int{},
		CPU: r.cpu, Memory: r.memory}
	s.PlantJitter = ms(r.plant.Jitter())
	link, _ := r.plant.Egress()
	s.LinkEgress = link / 1e6

	var errs []string
	if err := r.readLoops(ctx, now, &s); err != nil {
		errs = append(errs, "loops: "+err.Error())
	}
	if err := r.readDeployments(ctx, &s); err != nil {
		errs = append(errs, "deployments: "+err.Error())
	}
	if err := r.readPods(ctx, &s); err != nil {
		errs = append(errs, "pods: "+err.Error())
	}
	s.Err = strings.Join(errs, "; ")

	r.notePriorities(now, s)
	r.samples = append(r.samples, s)
	return s
}

// readLoops records the loops (those of the last read when they cannot be listed) and
// what the sample shows of them.
func (r *recorder) readLoops(ctx context.Context, now time.Time, s *sample) error {
	var loops v1alpha1.ControlLoopList
	err := r.c.List(ctx, &loops, client.InNamespace(Namespace))
	before := len(r.notes)
	for i := range loops.Items {
		r.loop(&loops.Items[i], now)
	}
	// The loops' new notes, in time order.
	fresh := r.notes[before:]
	sort.SliceStable(fresh, func(i, j int) bool { return fresh[i].T.Before(fresh[j].T) })
	if qos := r.loops[LoopQoS]; qos != nil {
		if ewma, ok := jsonNumber(qos.Status.State, "ewma"); ok {
			s.SeenJitter = ewma
		}
	}
	if scaling := r.loops[LoopScaling]; scaling != nil {
		s.Priorities = effectivePriorities(scaling)
		if by := scaling.Status.OverridesBy; by != nil && scaling.Status.Overrides != nil {
			s.OverridesBy = by.Loop
		}
	}
	return err
}

// readDeployments records the best-effort Deployments' egress and the web tier.
func (r *recorder) readDeployments(ctx context.Context, s *sample) error {
	var deps appsv1.DeploymentList
	err := r.c.List(ctx, &deps, client.InNamespace(Namespace))
	for _, d := range deps.Items {
		if d.Labels[classLabel] == bestEffort {
			s.Egress[d.Name] = egressOf(d)
		}
		if d.Name == Web {
			s.setWeb(d)
		}
	}
	return err
}

// egressOf is a Deployment's egress per Pod in Mbit/s, NaN when none is recorded.
func egressOf(d appsv1.Deployment) float64 {
	if v, ok := d.Annotations[sim.WorkloadEgressAnnotation]; ok {
		if q, err := resource.ParseQuantity(v); err == nil {
			return q.AsApproximateFloat64() / 1e6
		}
	}
	return math.NaN()
}

// setWeb records the web tier's replicas and its app container's memory.
func (s *sample) setWeb(d appsv1.Deployment) {
	if d.Spec.Replicas != nil {
		s.WebReplicas = *d.Spec.Replicas
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "app" {
			s.WebMemRequest = c.Resources.Requests[corev1.ResourceMemory]
			s.WebMemLimit = c.Resources.Limits[corev1.ResourceMemory]
		}
	}
}

// readPods counts each workload's Running Pods.
func (r *recorder) readPods(ctx context.Context, s *sample) error {
	var pods corev1.PodList
	err := r.c.List(ctx, &pods, client.InNamespace(Namespace))
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			s.Pods[p.Labels["app"]]++
		}
	}
	return err
}

// notePriorities notes factory-scaling's priorities when they change (not the first ones).
func (r *recorder) notePriorities(now time.Time, s sample) {
	if len(s.Priorities) == 0 || slices.Equal(s.Priorities, r.lastPrio) {
		return
	}
	if r.lastPrio != nil {
		by := ""
		if s.OverridesBy != "" {
			by = " (overridden by " + s.OverridesBy + ")"
		}
		r.note(now, "%-19s priorities now %s%s", LoopScaling, list(s.Priorities), by)
	}
	r.lastPrio = s.Priorities
}

// loop records a loop's state and its new history entries, and notes what they changed.
func (r *recorder) loop(l *v1alpha1.ControlLoop, now time.Time) {
	r.loops[l.Name] = l
	h := r.history[l.Name]
	if h == nil {
		h = map[int64]v1alpha1.HistoryEntry{}
		r.history[l.Name] = h
	}
	for _, e := range l.Status.History {
		h[e.Tick] = e
		if e.Tick <= r.lastTick[l.Name] {
			continue
		}
		r.lastTick[l.Name] = e.Tick
		at := e.Time.Time
		key := decisionKey(e)
		switch {
		case e.Error != "":
			if e.Error != r.lastError[l.Name] {
				r.note(at, "%-19s error    %s", l.Name, e.Error)
			}
			r.lastError[l.Name] = e.Error
			continue
		case len(e.Applied) > 0:
			r.note(at, "%-19s changed  %s  (%s)", l.Name, actions(e.Applied), why(e))
		case paramsOf(e) != "":
			r.note(at, "%-19s changed  %s's params: %s  (%s)", l.Name, l.Spec.Supervises, paramsOf(e), why(e))
		case key != r.lastDecision[l.Name]:
			r.note(at, "%-19s decides  %s", l.Name, decision(e))
		}
		r.lastDecision[l.Name] = key
		r.lastError[l.Name] = ""
	}
}

// decisionKey is what makes a decision worth a line when it differs from the previous
// one: its events and what the guard said, but for cooldowns and clamps (a change's line
// says those).
func decisionKey(e v1alpha1.HistoryEntry) string {
	var parts []string
	for _, ev := range e.Events {
		if ev != "Cooldown" {
			parts = append(parts, ev)
		}
	}
	for _, g := range e.Guard {
		if !strings.Contains(g, "in cooldown") && !strings.HasPrefix(g, "Clamped") {
			parts = append(parts, g)
		}
	}
	return strings.Join(parts, "\x00")
}

// why is a change's reason: the decision's events and the first action's reason, and
// what the guard clamped.
func why(e v1alpha1.HistoryEntry) string {
	s := strings.Join(e.Events, ", ")
	if len(e.Applied) > 0 && e.Applied[0].Reason != "" {
		s += ": " + e.Applied[0].Reason
	}
	for _, g := range e.Guard {
		if strings.HasPrefix(g, "Clamped") {
			s += "; " + g
		}
	}
	return s
}

// entries returns a loop's recorded history, oldest first.
func (r *recorder) entries(loop string) []v1alpha1.HistoryEntry {
	var out []v1alpha1.HistoryEntry
	for _, e := range r.history[loop] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tick < out[j].Tick })
	return out
}

// historyRecord is one line of history.jsonl: a loop's history entry and the loop's name.
type historyRecord struct {
	Loop      string `json:"loop"`
	Namespace string `json:"namespace"`
	v1alpha1.HistoryEntry
}

// records are every loop's history entries, by time.
func (r *recorder) records() []historyRecord {
	var out []historyRecord
	for _, name := range Loops {
		for _, e := range r.entries(name) {
			out = append(out, historyRecord{Loop: name, Namespace: Namespace, HistoryEntry: e})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(&out[j].Time) })
	return out
}

// effectivePriorities are spec.policy.params.priorities, or status.overrides.priorities
// when there is one (overrides win; a list is replaced whole).
func effectivePriorities(l *v1alpha1.ControlLoop) []string {
	for _, raw := range []*[]byte{overridesRaw(l), paramsRaw(l)} {
		if raw == nil {
			continue
		}
		var p struct {
			Priorities []string `json:"priorities"`
		}
		if json.Unmarshal(*raw, &p) == nil && p.Priorities != nil {
			return p.Priorities
		}
	}
	return nil
}

func overridesRaw(l *v1alpha1.ControlLoop) *[]byte {
	if l.Status.Overrides == nil {
		return nil
	}
	return &l.Status.Overrides.Raw
}

func paramsRaw(l *v1alpha1.ControlLoop) *[]byte {
	if l.Spec.Policy.Params == nil {
		return nil
	}
	return &l.Spec.Policy.Params.Raw
}

// paramsOf is what a Deliberative tick wrote into its supervised loop's overrides, "" when
// nothing.
func paramsOf(e v1alpha1.HistoryEntry) string {
	if e.Params == nil || len(e.Params.Raw) == 0 || string(e.Params.Raw) == "null" || string(e.Params.Raw) == "{}" {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(e.Params.Raw, &m) != nil {
		return string(e.Params.Raw)
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+compact(m[k]))
	}
	return strings.Join(parts, ", ")
}

// decision summarizes what a tick decided: its events and the actions it asked for, and
// what the guard said of them.
func decision(e v1alpha1.HistoryEntry) string {
	s := strings.Join(e.Events, ", ")
	if s == "" {
		s = "no event"
	}
	if len(e.Actions) > 0 {
		s += " → " + actions(e.Actions)
	}
	if len(e.Guard) > 0 {
		s += " · guard: " + strings.Join(e.Guard, "; ")
	}
	return s
}

// actions summarizes actions: "telemetry egress 800M, video egress 800M".
func actions(as []v1alpha1.Action) string {
	var parts []string
	for _, a := range as {
		var set map[string]any
		if err := json.Unmarshal(a.Set.Raw, &set); err != nil {
			parts = append(parts, a.Target+" "+string(a.Set.Raw))
			continue
		}
		parts = append(parts, a.Target+" "+setSummary(set))
	}
	return strings.Join(parts, ", ")
}

// setSummary writes a decision's set briefly: "egress 800M", "replicas 5",
// "app memory 192Mi/576Mi" (request/limit).
func setSummary(set map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(set)) {
		switch v := set[k].(type) {
		case map[string]any:
			switch k {
			case "bandwidth":
				for _, d := range slices.Sorted(maps.Keys(v)) {
					parts = append(parts, d+" "+compact(v[d]))
				}
			case "resources":
				for _, c := range slices.Sorted(maps.Keys(v)) {
					parts = append(parts, c+" "+resources(v[c]))
				}
			default:
				parts = append(parts, k+" "+compact(v))
			}
		default:
			parts = append(parts, k+" "+compact(v))
		}
	}
	return strings.Join(parts, " ")
}

// resources writes a container's requests and limits: "memory 192Mi/576Mi".
func resources(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return compact(v)
	}
	req, _ := m["requests"].(map[string]any)
	lim, _ := m["limits"].(map[string]any)
	names := map[string]bool{}
	for k := range req {
		names[k] = true
	}
	for k := range lim {
		names[k] = true
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(names)) {
		r, l := req[n], lim[n]
		switch {
		case r != nil && l != nil:
			parts = append(parts, fmt.Sprintf("%s %v/%v", n, r, l))
		case r != nil:
			parts = append(parts, fmt.Sprintf("%s request %v", n, r))
		default:
			parts = append(parts, fmt.Sprintf("%s limit %v", n, l))
		}
	}
	return strings.Join(parts, " ")
}

// compact is v as compact JSON, strings unquoted, lists as [a b].
func compact(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, e := range x {
			parts = append(parts, compact(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func list(s []string) string { return "[" + strings.Join(s, " ") + "]" }

// jsonNumber reads a number field of a JSON object.
func jsonNumber(obj *apiextensionsv1.JSON, key string) (float64, bool) {
	if obj == nil {
		return 0, false
	}
	var m map[string]any
	if json.Unmarshal(obj.Raw, &m) != nil {
		return 0, false
	}
	v, ok := m[key].(float64)
	return v, ok
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
