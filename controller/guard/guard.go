// Package guard keeps every decision inside its loop's declared targets and
// bounds: it clamps values to bounds and steps, holds targets in cooldown,
// caps actions per tick, refuses to act on stale metrics, and says what it
// changed or refused. It trusts the policy with nothing the spec does not
// allow.
package guard

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// Input is everything the guard judges a decision against.
type Input struct {
	Now  time.Time
	Spec *v1alpha1.ControlLoopSpec
	// Actuators fit each field of a set into its target's bounds.
	Actuators *actuators.Registry
	// Targets are the targets as read this tick, by target name.
	Targets map[string]*actuators.Target
	// LastChange is when each target was last changed, by target name.
	LastChange map[string]time.Time
	// Metrics are the tick's metrics, true for those fresh: an action on a
	// metric that is stale, or not there at all, is refused.
	Metrics map[string]bool
	// Grace lets through an action decided less than this before its
	// target's cooldown ends, to be made at the end (Result.ActAt) rather
	// than refused: a policy that keeps a cooldown of its own by tick times
	// finds it over at the tick a cooldown's length after the change, while
	// the guard's, from the change's intent, ends milliseconds later.
	Grace time.Duration
}

// Verdict is what the guard did to one action.
type Verdict string

// The verdicts.
const (
	Applied   Verdict = "Applied"   // let through as asked
	Clamped   Verdict = "Clamped"   // let through, changed to fit the bounds
	Refused   Verdict = "Refused"   // not acted on
	Unchanged Verdict = "Unchanged" // nothing to do: the target is already there (as asked, or as clamped)
	Failed    Verdict = "Failed"    // let through, and the actuation failed (the controller says so)
)

// Note says what the guard did to one action, and why.
type Note struct {
	Target  string
	Verdict Verdict
	// Reason is why an action was Refused, one of the Reasons: few, so
	// that metrics may count refusals by it; Message says the rest.
	Reason  Reason
	Message string
}

// Reason is why the guard refused an action.
type Reason string

// The Reasons.
const (
	NotATarget      Reason = "NotATarget"      // not one of the loop's targets
	TargetMissing   Reason = "TargetMissing"   // its workload does not exist
	ChangedThisTick Reason = "ChangedThisTick" // the target was changed already this tick
	MetricStale     Reason = "MetricStale"     // the metric it names (or any, when it names none) is stale or missing
	Cooldown        Reason = "Cooldown"        // the target is in its cooldown
	Bounds          Reason = "Bounds"          // its target's bounds refuse it: none declared, broken, or an HPA owns the replicas
	MaxActions      Reason = "MaxActions"      // the loop's maxActions were reached this tick
	NotOverridable  Reason = "NotOverridable"  // a Deliberative loop's params the supervised loop does not let it override
	OverrideFailed  Reason = "OverrideFailed"  // writing a Deliberative loop's params failed
)

func (n Note) String() string {
	return fmt.Sprintf("%s %s: %s", n.Verdict, n.Target, n.Message)
}

// Result is the actions to carry out, clamped, and a note for every action
// the guard did not let through exactly as asked.
type Result struct {
	Actions []decision.Action
	Notes   []Note
	// CooldownEnds is when the earliest cooldown that refused an action ends
	// (zero when none did): the loop asks again then.
	CooldownEnds time.Time
	// ActAt is when the last cooldown of the actions let through within
	// Grace of its end ends (zero when none): no action is made before.
	ActAt time.Time
}

// Check judges a decision that passed the contract. Actions are taken in
// order; each target is changed at most once a tick.
func Check(in Input, d decision.Decision) Result {
	var res Result
	bounds := map[string]*v1alpha1.TargetSpec{}
	for i := range in.Spec.Targets {
		bounds[in.Spec.Targets[i].Name] = &in.Spec.Targets[i]
	}
	maxActions := int(in.Spec.Safety.MaxActions)
	seen := map[string]bool{}
	for _, a := range d.Actions {
		refuse := func(reason Reason, format string, args ...any) {
			res.Notes = append(res.Notes, Note{Target: a.Target, Verdict: Refused, Reason: reason, Message: fmt.Sprintf(format, args...)})
		}
		spec, ok := bounds[a.Target]
		if !ok { // the engine's contract check makes this unreachable; stay safe anyway
			refuse(NotATarget, "not one of the loop's targets")
			continue
		}
		cur := in.Targets[a.Target]
		switch {
		case cur == nil || !cur.Exists:
			refuse(TargetMissing, "%s %s does not exist", workload.Of("", spec.Ref).Kind, spec.Ref.Name)
			continue
		case seen[a.Target]:
			refuse(ChangedThisTick, "already changed this tick")
			continue
		}
		if why := staleness(in.Metrics, a.Metric); why != "" {
			refuse(MetricStale, "%s", why)
			continue
		}
		var cooling time.Time // the end of the target's cooldown, when within Grace of it
		if last, ok := in.LastChange[a.Target]; ok {
			until := last.Add(in.Spec.Safety.Cooldown.Duration)
			if until.Sub(in.Now) > in.Grace {
				refuse(Cooldown, "in cooldown for %s more (cooldown %s)", until.Sub(in.Now).Round(time.Millisecond), in.Spec.Safety.Cooldown.Duration)
				if res.CooldownEnds.IsZero() || until.Before(res.CooldownEnds) {
					res.CooldownEnds = until
				}
				continue
			}
			if in.Now.Before(until) {
				cooling = until
			}
		}
		set, fit := fitSet(in.Actuators, cur, a.Set)
		if fit.Refusal != "" {
			refuse(Bounds, "%s", fit.Refusal)
			continue
		}
		if !fit.Changes {
			// A clamp that lands where the target already is was still a clamp: the
			// policy asked for something else.
			res.Notes = append(res.Notes, clamps(a.Target, fit.Clamps)...)
			why := "already as asked"
			if len(fit.Clamps) > 0 {
				why = "already as clamped"
			}
			res.Notes = append(res.Notes, Note{Target: a.Target, Verdict: Unchanged, Message: why})
			continue
		}
		if maxActions > 0 && len(res.Actions) >= maxActions {
			refuse(MaxActions, "maxActions %d reached this tick", maxActions)
			continue
		}
		seen[a.Target] = true
		res.Notes = append(res.Notes, clamps(a.Target, fit.Clamps)...)
		a.Set = set
		res.Actions = append(res.Actions, a)
		if cooling.After(res.ActAt) {
			res.ActAt = cooling
		}
	}
	return res
}

// clamps are the notes of what fitting changed in a target's set, sorted.
func clamps(target string, msgs []string) []Note {
	sort.Strings(msgs)
	notes := make([]Note, len(msgs))
	for i, m := range msgs {
		notes[i] = Note{Target: target, Verdict: Clamped, Message: m}
	}
	return notes
}

// fitSet fits every field of a set into the target's bounds, in the actuators' order.
func fitSet(reg *actuators.Registry, t *actuators.Target, set decision.Set) (decision.Set, actuators.Fit) {
	fit := actuators.Fit{OutOfBounds: t.Spec.OutOfBounds}
	out := decision.Set{}
	for _, field := range slices.Sorted(maps.Keys(set)) {
		if _, ok := reg.Get(field); !ok { // the contract makes this unreachable; stay safe anyway
			fit.Refuse("%s: no actuator for this field", field)
		}
	}
	for _, a := range reg.All() {
		want, ok := set[a.Field()]
		if !ok || fit.Refusal != "" {
			continue
		}
		if v := a.Fit(&fit, t, want); fit.Refusal == "" {
			out[a.Field()] = v
		}
	}
	return out, fit
}

// staleness refuses an action on a metric that is stale or missing: the one
// it names, or any of the tick's metrics when it names none.
func staleness(metrics map[string]bool, metric string) string {
	if metric != "" {
		if !metrics[metric] {
			return fmt.Sprintf("metric %s is stale or missing", metric)
		}
		return ""
	}
	var stale []string
	for name, fresh := range metrics {
		if !fresh {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		return fmt.Sprintf("the action names no metric and metrics %v are stale or missing", stale)
	}
	return ""
}
