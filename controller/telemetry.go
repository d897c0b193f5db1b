package controller

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
)

// The per-loop metric families, on controller-runtime's registry. Every
// series carries the loop's namespace and name; the other labels are
// bounded by the loop's spec (targets, collectors), the actuators' fields
// and fixed sets (outcomes, results, reasons, phases). A loop's series go
// when its runner does (the loop deleted, or this replica no longer
// leading).
var (
	loopPanics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_loop_panics_total",
		Help: "Panics recovered in a loop's ticks (the tick fails, the loop goes Degraded) or in its runner (retried).",
	}, []string{"namespace", "loop"})
	loopTicks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_loop_ticks_total",
		Help: "Ticks of a loop by outcome: acted (changed a target or a supervised loop's params), held (changed nothing), failed (no decision acted on: the tick's error is in the history).",
	}, []string{"namespace", "loop", "outcome"})
	tickDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "governor_loop_tick_duration_seconds",
		Help:    "Time from a tick's start to its record: reading metrics and targets, deciding, guarding, acting (the status write not included).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"namespace", "loop"})
	decisionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "governor_decision_duration_seconds",
		Help:    "Time the policy took to decide a tick, by bundle and revision (only the revision the loop last decided with is kept).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"namespace", "loop", "bundle", "revision"})
	tickLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_tick_lag_seconds",
		Help: "How late the loop's last tick started against when it was due (its slot of the interval; 0 when a new observation woke it).",
	}, []string{"namespace", "loop"})
	// ticksLate is the replica's, not a loop's: a histogram per loop would
	// be a dozen series for each.
	ticksLate = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "governor_tick_lag_seconds",
		Help:    "How late the ticks of the loops this replica runs started against when they were due (0 for a tick woken early by an observation).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	actionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_actions_total",
		Help: "A loop's actions by target and result: applied, clamped (applied, changed to fit the bounds: also counted as applied), refused (by reason), failed (actuation failed or not attempted). The target of a Deliberative loop's params is the supervised loop.",
	}, []string{"namespace", "loop", "target", "result", "reason"})
	metricValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_metric_value",
		Help: "The value of a loop's metric at its last tick (input.metrics.<metric>.value); absent while it has none.",
	}, []string{"namespace", "loop", "metric"})
	metricAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_metric_age_seconds",
		Help: "The age of a loop's metric's value at the loop's last tick; absent while it has none.",
	}, []string{"namespace", "loop", "metric"})
	metricStale = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_metric_stale",
		Help: "1 when a loop's metric was stale or missing at its last tick (older than spec.safety.staleAfter, or no value): the guard refuses actions on it.",
	}, []string{"namespace", "loop", "metric"})
	targetValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_target_value",
		Help: "A target's current value of a field as its actuator reads it (replicas, bandwidth.egress in bits/s, resources.<container>.requests.cpu in cores, hpa.minReplicas, ...), updated when the loop changes it.",
	}, []string{"namespace", "loop", "target", "field"})
	lastChangeTime = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_last_change_timestamp_seconds",
		Help: "When the loop last changed a target (status.targets[].lastChange), as Unix time.",
	}, []string{"namespace", "loop", "target"})
	loopPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "governor_loop_phase",
		Help: "1 for the loop's phase (Pending, Running, Passive, Paused, Degraded), 0 for the others.",
	}, []string{"namespace", "loop", "phase"})
	collectorErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "governor_collector_errors_total",
		Help: "Ticks at which one of a loop's collectors reported an error, by collector kind (hubble, prometheus, resources).",
	}, []string{"namespace", "loop", "kind"})
)

// loopMetrics are the per-loop metrics, to register once per process.
func loopMetrics() []prometheus.Collector {
	return []prometheus.Collector{loopPanics, loopTicks, tickDuration, decisionDuration, tickLag, ticksLate, actionsTotal,
		metricValue, metricAge, metricStale, targetValue, lastChangeTime, loopPhase, collectorErrors}
}

// The outcomes of governor_loop_ticks_total.
const (
	outcomeActed = iota
	outcomeHeld
	outcomeFailed
)

var outcomes = [...]string{outcomeActed: "acted", outcomeHeld: "held", outcomeFailed: "failed"}

var phases = [...]v1alpha1.Phase{v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhasePassive, v1alpha1.PhasePaused, v1alpha1.PhaseDegraded}

// loopTelemetry is one runner's series: the children bound to its loop's
// labels are made once, so that a tick costs no label lookups beyond the
// first of each target, metric and result. Its methods are called by the
// runner; forget (another goroutine) ends it, after which nothing is
// recorded: a runner finishing a tick cannot bring a deleted loop's series
// back.
type loopTelemetry struct {
	mu                sync.Mutex
	gone              bool
	namespace, name   string
	panics            prometheus.Counter
	ticks             [len(outcomes)]prometheus.Counter
	duration          prometheus.Observer
	lag               prometheus.Gauge
	phase             [len(phases)]prometheus.Gauge
	decisionRev       [2]string // bundle, revision of decision
	decision          prometheus.Observer
	actions           map[actionKey]prometheus.Counter
	metrics           map[string]metricSeries
	targets           map[string]map[string]*targetSeries // by target, then field
	changes           map[string]prometheus.Gauge
	collectorErrors   map[string]prometheus.Counter
	generation        int64  // of the spec whose targets the series were pruned to
	seen              uint64 // stamps the series a call set, to delete the others
	path              []byte // a target field's path, as setFieldsLocked builds it
	lastRecordedPhase v1alpha1.Phase
}

type actionKey struct {
	target, result string
	reason         guard.Reason
}

// metricSeries are a metric's gauges; value and age are nil while it has
// no value.
type metricSeries struct {
	value, age, stale prometheus.Gauge
	seen              uint64
}

type targetSeries struct {
	gauge prometheus.Gauge
	raw   string // the value as last set, to parse only a change
	seen  uint64
}

func newLoopTelemetry(namespace, name string) *loopTelemetry {
	t := &loopTelemetry{
		namespace: namespace, name: name,
		panics:          loopPanics.WithLabelValues(namespace, name),
		duration:        tickDuration.WithLabelValues(namespace, name),
		lag:             tickLag.WithLabelValues(namespace, name),
		actions:         map[actionKey]prometheus.Counter{},
		metrics:         map[string]metricSeries{},
		targets:         map[string]map[string]*targetSeries{},
		changes:         map[string]prometheus.Gauge{},
		collectorErrors: map[string]prometheus.Counter{},
	}
	for i, o := range outcomes {
		t.ticks[i] = loopTicks.WithLabelValues(namespace, name, o)
	}
	for i, p := range phases {
		t.phase[i] = loopPhase.WithLabelValues(namespace, name, string(p))
	}
	t.setPhaseLocked(v1alpha1.PhasePending)
	return t
}

// forget deletes the loop's series; nothing is recorded after it. Each
// series is deleted by its labels, as made: a partial match walks every
// series of a family, and a replica stopping its runners, one forget each,
// took minutes with thousands of loops (BenchmarkShards).
func (t *loopTelemetry) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gone = true
	ns, loop := t.namespace, t.name
	loopPanics.DeleteLabelValues(ns, loop)
	tickDuration.DeleteLabelValues(ns, loop)
	tickLag.DeleteLabelValues(ns, loop)
	for _, o := range outcomes {
		loopTicks.DeleteLabelValues(ns, loop, o)
	}
	for _, p := range phases {
		loopPhase.DeleteLabelValues(ns, loop, string(p))
	}
	if t.decision != nil {
		decisionDuration.DeleteLabelValues(ns, loop, t.decisionRev[0], t.decisionRev[1])
	}
	for k := range t.actions {
		actionsTotal.DeleteLabelValues(ns, loop, k.target, k.result, string(k.reason))
	}
	for name := range t.metrics {
		t.forgetMetricLocked(name)
	}
	for target := range t.targets {
		t.forgetTargetLocked(target)
	}
	for target := range t.changes {
		lastChangeTime.DeleteLabelValues(ns, loop, target)
	}
	for kind := range t.collectorErrors {
		collectorErrors.DeleteLabelValues(ns, loop, kind)
	}
}

// forgetMetricLocked deletes the series of one of the loop's metrics.
func (t *loopTelemetry) forgetMetricLocked(name string) {
	for _, v := range []*prometheus.GaugeVec{metricValue, metricAge, metricStale} {
		v.DeleteLabelValues(t.namespace, t.name, name)
	}
	delete(t.metrics, name)
}

// forgetTargetLocked deletes the series of a target's fields.
func (t *loopTelemetry) forgetTargetLocked(target string) {
	for field := range t.targets[target] {
		targetValue.DeleteLabelValues(t.namespace, t.name, target, field)
	}
	delete(t.targets, target)
}

// panicked counts a panic recovered outside a tick.
func (t *loopTelemetry) panicked() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.gone {
		t.panics.Inc()
	}
}

// lagged records how late a tick started.
func (t *loopTelemetry) lagged(lag time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.gone {
		t.lag.Set(max(lag, 0).Seconds())
		ticksLate.Observe(max(lag, 0).Seconds())
	}
}

// phaseIs records the loop's phase.
func (t *loopTelemetry) phaseIs(p v1alpha1.Phase) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.gone {
		t.setPhaseLocked(p)
	}
}

func (t *loopTelemetry) setPhaseLocked(p v1alpha1.Phase) {
	if p == t.lastRecordedPhase {
		return
	}
	for i := range phases {
		v := 0.0
		if phases[i] == p {
			v = 1
		}
		t.phase[i].Set(v)
	}
	t.lastRecordedPhase = p
}

// observed records a tick's metrics (as a World's Metrics returns them):
// value, age and staleness as the guard judges it, and collector errors.
// Metrics no longer there lose their series.
func (t *loopTelemetry) observed(loop *v1alpha1.ControlLoop, got map[string]collectors.Metric, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		return
	}
	t.seen++
	for name, m := range got {
		s, ok := t.metrics[name]
		if !ok {
			s = metricSeries{stale: metricStale.WithLabelValues(t.namespace, t.name, name)}
		}
		age, stale := metricFreshness(m, now, loop.Spec.Safety.StaleAfter.Duration)
		s.stale.Set(boolValue(stale))
		switch {
		case m.Value != nil:
			if s.value == nil {
				s.value = metricValue.WithLabelValues(t.namespace, t.name, name)
				s.age = metricAge.WithLabelValues(t.namespace, t.name, name)
			}
			s.value.Set(*m.Value)
			s.age.Set(age.Seconds())
		case s.value != nil:
			metricValue.DeleteLabelValues(t.namespace, t.name, name)
			metricAge.DeleteLabelValues(t.namespace, t.name, name)
			s.value, s.age = nil, nil
		}
		s.seen = t.seen
		t.metrics[name] = s
		if m.Err != "" {
			t.collectorErrorLocked(loop, name)
		}
	}
	for name, s := range t.metrics {
		if s.seen != t.seen {
			t.forgetMetricLocked(name)
		}
	}
}

// collectorErrorLocked counts an error of the collector named name, by
// its kind; a push collector has none of its own (its endpoint counts
// refused pushes), nor an observation no collector names.
func (t *loopTelemetry) collectorErrorLocked(loop *v1alpha1.ControlLoop, name string) {
	kind := ""
	for i := range loop.Spec.Collectors {
		if loop.Spec.Collectors[i].Name == name {
			kind = loop.Spec.Collectors[i].Kind()
		}
	}
	if kind == "" || kind == v1alpha1.CollectorPush {
		return
	}
	c, ok := t.collectorErrors[kind]
	if !ok {
		c = collectorErrors.WithLabelValues(t.namespace, t.name, kind)
		t.collectorErrors[kind] = c
	}
	c.Inc()
}

// read records a target's state as its input document shows it: every
// number and quantity of its actuators' fields, by path (replicas,
// bandwidth.egress, ...). Fields it no longer shows lose their series.
func (t *loopTelemetry) read(target string, doc map[string]any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		return
	}
	t.seen++
	fields := t.targets[target]
	if fields == nil {
		fields = map[string]*targetSeries{}
		t.targets[target] = fields
	}
	for k, v := range doc {
		switch k {
		case "kind", "namespace", "name", "exists":
			continue
		}
		t.setFieldsLocked(target, fields, k, v)
	}
	for field, s := range fields {
		if s.seen != t.seen {
			targetValue.DeleteLabelValues(t.namespace, t.name, target, field)
			delete(fields, field)
		}
	}
}

// applied records the values a tick set on its targets, so the gauges do
// not wait for the next tick's read.
func (t *loopTelemetry) appliedLocked(applied []v1alpha1.Action) {
	for _, a := range applied {
		var set map[string]any
		if json.Unmarshal(a.Set.Raw, &set) != nil {
			continue
		}
		fields := t.targets[a.Target]
		if fields == nil {
			fields = map[string]*targetSeries{}
			t.targets[a.Target] = fields
		}
		for k, v := range set {
			t.setFieldsLocked(a.Target, fields, k, v)
		}
	}
}

// setFieldsLocked sets the gauges of the numbers of v, whose path is
// t.path+key: the path is built in a buffer, and a series looked up by it
// without a string made, so that a tick of known fields allocates nothing.
func (t *loopTelemetry) setFieldsLocked(target string, fields map[string]*targetSeries, key string, v any) {
	n := len(t.path)
	if n > 0 {
		t.path = append(t.path, '.')
	}
	t.path = append(t.path, key...)
	defer func() { t.path = t.path[:n] }()
	var raw string
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			if k != "name" {
				t.setFieldsLocked(target, fields, k, sub)
			}
		}
		return
	case string:
		raw = v
	case int64:
		raw = strconv.FormatInt(v, 10)
	case int32:
		raw = strconv.FormatInt(int64(v), 10)
	case int:
		raw = strconv.Itoa(v)
	case float64:
		raw = strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return
	}
	s := fields[string(t.path)]
	if s == nil {
		path := string(t.path)
		s = &targetSeries{gauge: targetValue.WithLabelValues(t.namespace, t.name, target, path)}
		fields[path] = s
	} else if s.raw == raw {
		s.seen = t.seen
		return
	}
	q, err := resource.ParseQuantity(raw)
	if err != nil {
		return
	}
	s.gauge.Set(q.AsApproximateFloat64())
	s.raw, s.seen = raw, t.seen
}

// ticked records a tick the runner has recorded in st: its outcome and
// time, the policy's, the actions by result, what it set, the phase and
// the targets' last changes.
func (t *loopTelemetry) ticked(loop *v1alpha1.ControlLoop, res tickResult, st *v1alpha1.ControlLoopStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone {
		return
	}
	if loop.Generation != t.generation {
		t.pruneTargetsLocked(loop)
	}
	t.setPhaseLocked(st.Phase)
	t.lastChangesLocked(st)
	if res.entry.Time.IsZero() {
		return // paused: no tick
	}
	outcome := outcomeHeld
	switch {
	case res.entry.Error != "":
		outcome = outcomeFailed
	case len(res.entry.Applied) > 0 || res.entry.Params != nil:
		outcome = outcomeActed
	}
	t.ticks[outcome].Inc()
	t.duration.Observe(time.Since(res.entry.Time.Time).Seconds())
	if res.panicked != "" {
		t.panics.Inc()
	}
	if res.decideTime > 0 {
		t.decisionLocked(loop.Spec.Policy.Bundle, res.entry.Revision).Observe(res.decideTime.Seconds())
	}
	for i, n := range res.notes {
		switch n.Verdict {
		case guard.Refused:
			t.countLocked(n.Target, "refused", n.Reason)
		case guard.Failed:
			t.countLocked(n.Target, "failed", "")
		case guard.Clamped:
			if i == 0 || res.notes[i-1].Target != n.Target || res.notes[i-1].Verdict != guard.Clamped {
				t.countLocked(n.Target, "clamped", "") // one action's clamps, once
			}
		}
	}
	for _, a := range res.entry.Applied {
		t.countLocked(a.Target, "applied", "")
	}
	if res.entry.Params != nil {
		t.countLocked(loop.Spec.Supervises, "applied", "")
	}
	t.appliedLocked(res.entry.Applied)
}

// decisionLocked is the decision histogram of a bundle's revision; the
// previous revision's series go, so a loop keeps one.
func (t *loopTelemetry) decisionLocked(bundle, revision string) prometheus.Observer {
	if t.decision == nil || t.decisionRev != [2]string{bundle, revision} {
		if t.decision != nil {
			decisionDuration.DeleteLabelValues(t.namespace, t.name, t.decisionRev[0], t.decisionRev[1])
		}
		t.decisionRev = [2]string{bundle, revision}
		t.decision = decisionDuration.WithLabelValues(t.namespace, t.name, bundle, revision)
	}
	return t.decision
}

func (t *loopTelemetry) countLocked(target, result string, reason guard.Reason) {
	k := actionKey{target: target, result: result, reason: reason}
	c, ok := t.actions[k]
	if !ok {
		c = actionsTotal.WithLabelValues(t.namespace, t.name, target, result, string(reason))
		t.actions[k] = c
	}
	c.Inc()
}

// lastChangesLocked sets when each target last changed; targets the status
// no longer has lose their series.
func (t *loopTelemetry) lastChangesLocked(st *v1alpha1.ControlLoopStatus) {
	t.seen++
	for _, ts := range st.Targets {
		if ts.LastChange == nil {
			continue
		}
		g, ok := t.changes[ts.Name]
		if !ok {
			g = lastChangeTime.WithLabelValues(t.namespace, t.name, ts.Name)
			t.changes[ts.Name] = g
		}
		g.Set(float64(ts.LastChange.UnixNano()) / 1e9)
	}
	for name := range t.changes {
		if !hasTargetStatus(st, name) {
			lastChangeTime.DeleteLabelValues(t.namespace, t.name, name)
			delete(t.changes, name)
		}
	}
}

func hasTargetStatus(st *v1alpha1.ControlLoopStatus, name string) bool {
	for _, ts := range st.Targets {
		if ts.Name == name && ts.LastChange != nil {
			return true
		}
	}
	return false
}

// pruneTargetsLocked deletes the series of targets the spec no longer
// declares (and of a supervised loop it no longer supervises).
func (t *loopTelemetry) pruneTargetsLocked(loop *v1alpha1.ControlLoop) {
	t.generation = loop.Generation
	declared := func(name string) bool {
		if name == loop.Spec.Supervises {
			return true
		}
		for i := range loop.Spec.Targets {
			if loop.Spec.Targets[i].Name == name {
				return true
			}
		}
		return false
	}
	for name := range t.targets {
		if !declared(name) {
			t.forgetTargetLocked(name)
		}
	}
	for k := range t.actions {
		if !declared(k.target) {
			actionsTotal.DeleteLabelValues(t.namespace, t.name, k.target, k.result, string(k.reason))
			delete(t.actions, k)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
