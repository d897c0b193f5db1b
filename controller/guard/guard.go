// Package guard keeps every decision inside its loop's declared targets and
// bounds: it clamps values to bounds and steps, holds targets in cooldown,
// caps actions per tick, refuses to act on stale metrics, and says what it
// changed or refused. It trusts the policy with nothing the spec does not
// allow.
package guard

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// Target is the current state of one target, as read before the tick.
type Target struct {
	Exists   bool
	Replicas *int64
	Egress   *resource.Quantity
	Ingress  *resource.Quantity
	// Containers are the pod template's containers' resources, by name.
	Containers map[string]corev1.ResourceRequirements
	// HPA is the HorizontalPodAutoscaler of the target, when it has one.
	HPA *HPA
}

// HPA is the state of a target's HorizontalPodAutoscaler.
type HPA struct {
	Name        string
	MinReplicas int64
	MaxReplicas int64
}

// Input is everything the guard judges a decision against.
type Input struct {
	Now  time.Time
	Spec *v1alpha1.ControlLoopSpec
	// Targets are the current states, by target name.
	Targets map[string]Target
	// LastChange is when each target was last changed, by target name.
	LastChange map[string]time.Time
	// Metrics are the tick's metrics, true for those fresh: an action on a
	// metric that is stale, or not there at all, is refused.
	Metrics map[string]bool
}

// Verdict is what the guard did to one action.
type Verdict string

const (
	Applied   Verdict = "Applied"   // let through as asked
	Clamped   Verdict = "Clamped"   // let through, changed to fit the bounds
	Refused   Verdict = "Refused"   // not acted on
	Unchanged Verdict = "Unchanged" // nothing to do: the target is already there
)

// Note says what the guard did to one action, and why.
type Note struct {
	Target  string
	Verdict Verdict
	Message string
}

func (n Note) String() string {
	return fmt.Sprintf("%s %s: %s", n.Verdict, n.Target, n.Message)
}

// Result is the actions to carry out, clamped, and a note for every action
// the guard did not let through exactly as asked.
type Result struct {
	Actions []bundles.Action
	Notes   []Note
}

// Check judges a decision that passed the contract. Actions are taken in
// order; each target is changed at most once a tick.
func Check(in Input, d bundles.Decision) Result {
	var res Result
	bounds := map[string]*v1alpha1.TargetSpec{}
	for i := range in.Spec.Targets {
		bounds[in.Spec.Targets[i].Name] = &in.Spec.Targets[i]
	}
	maxActions := int(in.Spec.Safety.MaxActions)
	seen := map[string]bool{}
	for _, a := range d.Actions {
		refuse := func(format string, args ...any) {
			res.Notes = append(res.Notes, Note{Target: a.Target, Verdict: Refused, Message: fmt.Sprintf(format, args...)})
		}
		spec, ok := bounds[a.Target]
		if !ok { // the engine's contract check makes this unreachable; stay safe anyway
			refuse("not one of the loop's targets")
			continue
		}
		cur := in.Targets[a.Target]
		switch {
		case !cur.Exists:
			refuse("%s %s does not exist", kindOf(spec), spec.Ref.Name)
			continue
		case seen[a.Target]:
			refuse("already changed this tick")
			continue
		}
		if why := staleness(in.Metrics, a.Metric); why != "" {
			refuse("%s", why)
			continue
		}
		if last, ok := in.LastChange[a.Target]; ok {
			if until := last.Add(in.Spec.Safety.Cooldown.Duration); in.Now.Before(until) {
				refuse("in cooldown for %s more (cooldown %s)", until.Sub(in.Now).Round(time.Millisecond), in.Spec.Safety.Cooldown.Duration)
				continue
			}
		}
		c := clamp{spec: spec, cur: cur}
		set := c.set(a.Set)
		if c.refusal != "" {
			refuse("%s", c.refusal)
			continue
		}
		if !c.changes {
			res.Notes = append(res.Notes, Note{Target: a.Target, Verdict: Unchanged, Message: "already as asked"})
			continue
		}
		if maxActions > 0 && len(res.Actions) >= maxActions {
			refuse("maxActions %d reached this tick", maxActions)
			continue
		}
		seen[a.Target] = true
		if len(c.clamps) > 0 {
			sort.Strings(c.clamps)
			for _, m := range c.clamps {
				res.Notes = append(res.Notes, Note{Target: a.Target, Verdict: Clamped, Message: m})
			}
		}
		a.Set = set
		res.Actions = append(res.Actions, a)
	}
	return res
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

func kindOf(spec *v1alpha1.TargetSpec) string {
	if spec.Ref.Kind == "" {
		return "Deployment"
	}
	return string(spec.Ref.Kind)
}
