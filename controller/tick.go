package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/controller/guard"
	"governor.dev/governor/decision"
)

// defaultInterval applies when a loop was created without the CRD's
// defaulting (it always sets one).
const defaultInterval = time.Second

// defaultMinInterval is the CRD's default of spec.minInterval.
const defaultMinInterval = 50 * time.Millisecond

// minIntervalOf is a loop's spec.minInterval, or its default.
func minIntervalOf(spec *v1alpha1.ControlLoopSpec) time.Duration {
	if spec.MinInterval != nil {
		return spec.MinInterval.Duration
	}
	return defaultMinInterval
}

// tickResult is what one tick did, for the status and the events.
type tickResult struct {
	entry    v1alpha1.HistoryEntry
	decision *decision.Decision
	notes    []guard.Note
	changed  map[string]time.Time // targets changed, and when
	// seen are the observations the decision read (status.seen); nil when
	// the policy made no decision.
	seen   map[string]metav1.MicroTime
	phase  v1alpha1.Phase
	policy metav1.Condition
	// overridden is the Overridden condition; nil when the loop runs with
	// no overrides.
	overridden *metav1.Condition
	// bundle is the loop's bundle's status; followed is whether it comes
	// from a bundle server (and so has a BundleHealthy condition).
	bundle   *bundles.Status
	followed bool
	// interrupted is set when the tick's context ended (shutdown, lost
	// leadership, the loop removed) before it finished: what it failed to do
	// is no failure of the loop's.
	interrupted bool
	// panicked is the value of a panic that ended the tick, and stack where.
	panicked string
	stack    []byte
	// failure is the Ready condition's reason when the tick failed
	// (TickFailed when empty).
	failure string
	// probe is the tick's decision, when the policy decided within the
	// contract on the bundle's active revision: the gate makes it again
	// with each new revision.
	probe *bundles.Probe
	// cooldownEnds is when the earliest cooldown that refused an action this
	// tick ends (zero when none did): the loop ticks again then, not a
	// whole interval later.
	cooldownEnds time.Time
	// decideTime is how long the policy took to decide; zero when it was
	// not asked.
	decideTime time.Duration
	// input is the tick's input document, once built.
	input map[string]any
}

// wrote says whether a tick changed, or may have changed, anything outside
// the controller: a target (also one whose actuation was cut short: its
// cooldown must hold) or a supervised loop's overrides.
func (r tickResult) wrote() bool {
	return len(r.entry.Applied) > 0 || len(r.changed) > 0 || r.entry.Params != nil
}

// tick runs one tick of a loop whose state is Running or Passive: it builds
// the input document, decides, guards and (when Running) acts. It never
// returns an error: what went wrong is part of the result, recorded in the
// loop's history and conditions.
//
// A panic anywhere in the tick (a collector, an actuator, the engine) ends
// the tick as a failure of this loop alone: what it applied before is kept,
// and the loop goes Degraded with the panic's message.
//
// The input leaves out input.history unless the decision reads it, the
// decision log records it, or whole asks for the whole input (governor
// replay keeps it for authors): converting twenty ticks of history at each
// tick was a fifth of the memory of a thousand loops ticking. docs keep
// the targets' documents from tick to tick (nil: none kept).
func tick(ctx context.Context, w World, reg *bundles.Registry, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus, now time.Time, whole bool, docs targetDocs) (res tickResult) {
	spec := &loop.Spec
	res = tickResult{
		entry:   v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(now), Tick: status.Tick + 1},
		changed: map[string]time.Time{},
		phase:   v1alpha1.PhaseRunning,
		policy:  metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionTrue, Reason: "Prepared"},
	}
	if spec.State == v1alpha1.Passive {
		res.phase = v1alpha1.PhasePassive
	}
	fail := func(reason string, err error) tickResult {
		res.entry.Error = err.Error()
		res.phase = v1alpha1.PhaseDegraded
		res.policy = metav1.Condition{Type: v1alpha1.ConditionPolicyReady, Status: metav1.ConditionFalse, Reason: reason, Message: err.Error()}
		return res
	}
	defer recoverTick(&res)

	res.overridden = overriddenCondition(ctx, w, loop)
	engine, ok := reg.Engine(spec.Policy.Bundle)
	if !ok {
		return fail("UnknownBundle", fmt.Errorf("no bundle named %q (known: %v)", spec.Policy.Bundle, reg.Names()))
	}
	// The revision is resolved once: the decision, the history and the
	// decision log name the same one even if another goes live meanwhile.
	// The bundle's status is read after it, as it is written after an
	// activation.
	rev, err := engine.Revision(spec.Policy.Revision)
	if st, ok := reg.Status(spec.Policy.Bundle); ok {
		res.bundle = &st
		res.followed = reg.Followed(spec.Policy.Bundle)
		if note := refusalNote(&st, status.Bundle); note != "" {
			res.entry.Guard = append(res.entry.Guard, note)
		}
	}
	if err != nil {
		// Nothing to decide with: no revision yet, or not the pinned one.
		// Reading targets and metrics would be wasted.
		return fail("NoRevision", err)
	}
	res.entry.Revision = rev.String()
	if err := rev.CheckEntrypoint(spec.Policy.Decision); err != nil {
		// A helper rule or a typo: loops decide only with what the bundle
		// declares, so that no loop holds back the bundle's next revision.
		return fail("NotAnEntrypoint", err)
	}
	input, state, err := buildInput(ctx, w, loop, status, now, res.entry.Tick,
		whole || reg.LogsDecisions() || rev.Reads(ctx, spec.Policy.Decision, "history"), docs)
	if ctx.Err() != nil {
		res.interrupted = true
		return res
	}
	if err != nil {
		return inputFailed(res, err)
	}
	req := decisionRequest(spec, w.Actuators(), reg.Limits(), input)
	req.Values = state.values
	out, err := timedDecide(ctx, rev, req, &res)
	if ctx.Err() != nil {
		// Cut short: not a decision, nothing to log or act on.
		res.interrupted = true
		return res
	}
	logged := bundles.Logged{Loop: loop.Namespace + "/" + loop.Name, Tick: res.entry.Tick, Decision: spec.Policy.Decision,
		Revision: rev, Input: input, Err: err, Time: now}
	if out != nil {
		logged.Result = out.Raw
	}
	if lerr := reg.LogDecision(ctx, logged); lerr != nil {
		res.entry.Guard = append(res.entry.Guard, "decision log: "+lerr.Error())
	}
	if err != nil {
		var invalid *decision.InvalidDecisionError
		if errors.As(err, &invalid) {
			// The policy ran; the bundle is fine, its decision was not.
			res.entry.Error = "decision rejected: " + err.Error()
			return res
		}
		return fail(policyFailure(err), err)
	}
	if spec.Policy.Revision == "" {
		res.probe = &bundles.Probe{Loop: logged.Loop, Decision: req.Decision, Input: input, Contract: *req.Contract, Timeout: req.Timeout}
	}
	carryOut(ctx, w, loop, status, state, out, now, &res)
	return res
}

// recoverTick ends a tick that panicked as a failure of its loop; deferred.
func recoverTick(res *tickResult) {
	if p := recover(); p != nil {
		res.panicked = fmt.Sprint(p)
		res.stack = debug.Stack()
		res.entry.Error = "panic: " + res.panicked
		res.phase = v1alpha1.PhaseDegraded
	}
}

// timedDecide decides on rev, keeping the input and how long it took in res.
func timedDecide(ctx context.Context, rev *bundles.Revision, req bundles.Request, res *tickResult) (*bundles.Result, error) {
	res.input = req.Input
	start := time.Now()
	defer func() { res.decideTime = time.Since(start) }()
	return rev.Decide(ctx, req)
}

// inputFailed is a tick that could not build its input: Degraded, and
// when its collectors reach outside the operator's scope, Ready's reason
// says so.
func inputFailed(res tickResult, err error) tickResult {
	res.entry.Error = err.Error()
	res.phase = v1alpha1.PhaseDegraded
	var scope *collectors.ScopeError
	if errors.As(err, &scope) {
		res.failure = "CollectorOutOfScope"
	}
	return res
}

// decisionRequest is the decision a tick asks for: on its input, within
// the contract (the loop's targets and kind, the output limits) and the
// loop's time limit.
func decisionRequest(spec *v1alpha1.ControlLoopSpec, fields *actuators.Registry, lim bundles.Limits, input map[string]any) bundles.Request {
	contract := decision.Contract{Targets: map[string]bool{}, AllowParams: spec.Kind == v1alpha1.Deliberative, Fields: fields, Limits: lim.Output}
	for _, t := range spec.Targets {
		contract.Targets[t.Name] = true
	}
	var timeout time.Duration
	if spec.Policy.Timeout != nil {
		timeout = spec.Policy.Timeout.Duration
	}
	return bundles.Request{Decision: spec.Policy.Decision, Input: input, Contract: &contract, Timeout: lim.DecisionTimeout(timeout)}
}

// carryOut records a decision, writes its params (a Deliberative loop's), guards its
// actions and, unless the loop is Passive, acts on those the guard lets through.
func carryOut(ctx context.Context, w World, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus, state loopState, out *bundles.Result, now time.Time, res *tickResult) {
	spec := &loop.Spec
	res.decision = &out.Decision
	res.seen = state.seen
	res.entry.Events = out.Decision.Events
	for _, a := range out.Decision.Actions {
		res.entry.Actions = append(res.entry.Actions, apiAction(a))
	}

	if out.Decision.Params != nil && state.supervised != nil {
		applyParams(ctx, w, loop, state.supervised, out.Decision.Params, out.Revision, now, res)
	}

	// A tick within minInterval of a cooldown's end acts at the end: refused,
	// the loop would tick again no sooner than that.
	guarded := guard.Check(guard.Input{Now: now, Spec: spec, Actuators: w.Actuators(), Targets: state.targets,
		LastChange: lastChanges(status), Metrics: state.metrics, Grace: minIntervalOf(spec)}, out.Decision)
	res.notes = append(res.notes, guarded.Notes...) // after the params' refusal, if any
	res.cooldownEnds = guarded.CooldownEnds
	for _, n := range guarded.Notes {
		res.entry.Guard = append(res.entry.Guard, n.String())
	}
	if spec.State == v1alpha1.Passive {
		if len(guarded.Actions) > 0 {
			res.entry.Guard = append(res.entry.Guard, fmt.Sprintf("Passive: %d action(s) not applied", len(guarded.Actions)))
		}
		return
	}
	if changeAt, ok := intend(ctx, w, loop, guarded.Actions, latest(now, guarded.ActAt), res); ok {
		at := actuators.Tick{Loop: types.NamespacedName{Namespace: loop.Namespace, Name: loop.Name}, UID: loop.UID, Number: res.entry.Tick, Intent: changeAt}
		act(actuators.WithTick(ctx, at), w, guarded.Actions, state.targets, changeAt, res)
	}
}

// intend records that the actions' targets change at now (when the World
// gets there: an action the guard let through just before its cooldown's
// end waits for it), before they do, so that no crash lets a target change
// twice within its cooldown, and says when their cooldowns start (now, or
// later if the record had to wait). It says false when that failed: then
// nothing is acted on.
func intend(ctx context.Context, w World, loop *v1alpha1.ControlLoop, actions []decision.Action, now time.Time, res *tickResult) (time.Time, bool) {
	if len(actions) == 0 {
		return now, false
	}
	targets := make([]string, len(actions))
	for i, a := range actions {
		targets[i] = a.Target
	}
	at, err := w.Intend(ctx, loop, targets, now)
	switch {
	case err == nil:
		return at, true
	case ctx.Err() != nil:
		res.interrupted = true
		return now, false
	}
	for _, a := range actions {
		note := guard.Note{Target: a.Target, Verdict: guard.Failed, Message: "not acted on: recording the change before making it failed: " + err.Error()}
		res.notes = append(res.notes, note)
		res.entry.Guard = append(res.entry.Guard, note.String())
	}
	return now, false
}

// act carries out the guarded actions. What an action applied is recorded
// as applied, and starts its target's cooldown, also when the action then
// failed: a failure part-way is a partial change, never nothing.
func act(ctx context.Context, w World, actions []decision.Action, targets map[string]*actuators.Target, now time.Time, res *tickResult) {
	for i, a := range actions {
		applied, err := w.Act(ctx, targets[a.Target], a.Set)
		if len(applied) > 0 {
			a.Set = applied
			res.entry.Applied = append(res.entry.Applied, apiAction(a))
			res.changed[a.Target] = now
		}
		if ctx.Err() != nil {
			// Stopping: what was applied is recorded (its cooldown holds);
			// what was not is no failure. The action cut short may have
			// changed its target, so its cooldown starts too.
			res.interrupted = true
			res.changed[a.Target] = now
			res.entry.Guard = append(res.entry.Guard, fmt.Sprintf("Interrupted: %d action(s) not carried out (controller stopping)", len(actions)-i))
			return
		}
		if err != nil {
			msg := "actuation failed: " + err.Error()
			if len(applied) > 0 {
				msg = fmt.Sprintf("actuation failed after applying %s: %v", strings.Join(slices.Sorted(maps.Keys(applied)), ", "), err)
			}
			note := guard.Note{Target: a.Target, Verdict: guard.Failed, Message: msg}
			res.notes = append(res.notes, note)
			res.entry.Guard = append(res.entry.Guard, note.String())
		}
	}
}

// refusalNote is a history note for a revision of the loop's bundle refused
// at the gate since the loop last recorded its bundle's status; "" when
// there is none new.
func refusalNote(now *bundles.Status, recorded *v1alpha1.BundleStatus) string {
	var gate *bundles.GateError
	if !errors.As(now.LastError, &gate) {
		return ""
	}
	msg := truncate(now.LastError.Error())
	if recorded != nil && recorded.LastError == msg {
		return ""
	}
	return "Bundle: " + msg
}

// policyFailure is the condition reason for an engine error.
func policyFailure(err error) string {
	var undefined *bundles.UndefinedDecisionError
	var eval *bundles.EvalError
	var timeout *bundles.TimeoutError
	switch {
	case errors.As(err, &undefined):
		return "UndefinedDecision"
	case errors.As(err, &timeout):
		return "DecisionTimedOut"
	case errors.As(err, &eval):
		return "EvaluationFailed"
	}
	return "PolicyFailed"
}

// loopState is what the guard needs besides the decision.
type loopState struct {
	targets map[string]*actuators.Target
	metrics map[string]bool // true when fresh
	// seen are the metrics' observation times, for status.seen.
	seen map[string]metav1.MicroTime
	// supervised is the loop a Deliberative loop supervises.
	supervised *v1alpha1.ControlLoop
	// values are input keys converted to Rego values already (targets,
	// when every target's document was kept: targetDocs).
	values map[string]ast.Value
}

// buildInput builds the input document of a tick, with input.history when
// history is true. Its targets' documents are docs' when unchanged (nil
// docs: always new).
func buildInput(ctx context.Context, w World, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus, now time.Time, tick int64, history bool, docs targetDocs) (map[string]any, loopState, error) {
	st := loopState{targets: map[string]*actuators.Target{}, metrics: map[string]bool{}}
	observed, err := w.Metrics(ctx, loop, now)
	if err != nil {
		return nil, st, err
	}
	st.seen = seenObservations(observed)
	metrics := map[string]any{}
	for name, m := range observed {
		doc, stale := metricDoc(m, now, loop.Spec.Safety.StaleAfter.Duration, newObservation(status, name, m))
		metrics[name] = doc
		st.metrics[name] = !stale
	}
	targets := map[string]any{}
	values := make([][2]*ast.Term, 0, len(loop.Spec.Targets))
	for i := range loop.Spec.Targets {
		t := &loop.Spec.Targets[i]
		gt, doc, err := w.Target(ctx, loop, t)
		if err != nil {
			return nil, st, fmt.Errorf("reading target %s: %w", t.Name, err)
		}
		st.targets[t.Name] = gt
		var value ast.Value
		targets[t.Name], value = docs.keep(t.Name, doc, readOf(loop, gt))
		if value != nil {
			values = append(values, ast.Item(ast.StringTerm(t.Name), ast.NewTerm(value)))
		}
	}
	docs.forget(targets)
	if docs != nil && len(values) == len(targets) {
		st.values = map[string]ast.Value{"targets": ast.NewObject(values...)}
	}
	var supervised map[string]any
	if loop.Spec.Kind == v1alpha1.Deliberative {
		var err error
		if st.supervised, err = supervisedLoop(ctx, w, loop); err != nil {
			return nil, st, err
		}
		if supervised, err = supervisedDoc(st.supervised); err != nil {
			return nil, st, err
		}
	}
	read := map[string]any{"time": formatTime(now), "time_ns": timeNs(now), "tick": tick, "metrics": metrics, "targets": targets}
	in, err := inputDoc(loop, status, read, supervised, history)
	return in, st, err
}

// readKeys are the keys of the input a tick reads from the world (and
// status.lastInput keeps); inputDoc adds the rest from the loop.
var readKeys = []string{"time", "time_ns", "tick", "metrics", "targets"}

// inputDoc is a decision's input document: what a tick read (readKeys),
// the loop, its effective params, its status's state and history, and a
// Deliberative loop's supervised loop (nil for a Reactive one). The history
// is left out when withHistory is false.
func inputDoc(loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus, read, supervised map[string]any, withHistory bool) (map[string]any, error) {
	params, err := effectiveParams(loop)
	if err != nil {
		return nil, err
	}
	state, err := decodeJSON(status.State, "status.state")
	if err != nil {
		return nil, err
	}
	in := map[string]any{
		"loop": map[string]any{
			"name": loop.Name, "namespace": loop.Namespace,
			"kind": string(loop.Spec.Kind), "state": string(loop.Spec.State),
		},
		"params": params,
		"state":  state,
	}
	if withHistory {
		if in["history"], err = historyDoc(status.History); err != nil {
			return nil, err
		}
	}
	for _, k := range readKeys {
		in[k] = read[k]
	}
	if supervised != nil {
		in["supervised"] = supervised
	}
	return in, nil
}

func lastChanges(status *v1alpha1.ControlLoopStatus) map[string]time.Time {
	out := map[string]time.Time{}
	for _, t := range status.Targets {
		if t.LastChange != nil {
			out[t.Name] = t.LastChange.Time
		}
	}
	return out
}

// apiAction records a decision action in the API's form. A set is typed
// values of JSON (quantities, integers, objects of them): it always encodes.
func apiAction(a decision.Action) v1alpha1.Action {
	raw, _ := json.Marshal(a.Set)
	return v1alpha1.Action{Target: a.Target, Metric: a.Metric, Set: apiextensionsv1.JSON{Raw: raw}, Reason: a.Reason}
}

// eventType is the Kubernetes Event type of a guard verdict.
func eventType(v guard.Verdict) string {
	if v == guard.Refused || v == guard.Failed {
		return corev1.EventTypeWarning
	}
	return corev1.EventTypeNormal
}

// readyCondition summarises a tick.
func readyCondition(res tickResult) metav1.Condition {
	if res.phase == v1alpha1.PhaseDegraded {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: cmp.Or(res.failure, "TickFailed"), Message: res.entry.Error}
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: string(res.phase)}
}

// Stepped is one tick's outcome: the loop's next status, the tick's history
// entry, and the input document it decided on (nil when it got no input).
type Stepped struct {
	Status *v1alpha1.ControlLoopStatus
	Entry  v1alpha1.HistoryEntry
	Input  map[string]any
}

// Step runs one tick of a Running or Passive loop in a world: the
// controller's runners do this (and write the status); governor replay does
// it over a trace, and keeps each tick's input for authors to evaluate again.
func Step(ctx context.Context, w World, reg *bundles.Registry, loop *v1alpha1.ControlLoop, status *v1alpha1.ControlLoopStatus, now time.Time) (Stepped, error) {
	res := tick(ctx, w, reg, loop, status, now, true, nil)
	next, err := record(loop, status, res, 0)
	if err == nil && res.probe != nil {
		withLastInput(next, res.probe.Input, 0)
	}
	return Stepped{Status: next, Entry: res.entry, Input: res.input}, err
}
