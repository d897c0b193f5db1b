package controller

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/collectors"
	"governor.dev/governor/decision"
)

// World is what a tick reads and changes: the cluster, for the controller;
// a recorded trace, for governor replay.
type World interface {
	// Metrics are a loop's metrics at a tick, by name; an error when the
	// loop may not collect them at all (a *collectors.ScopeError: its
	// collectors reach outside the operator's scope).
	Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) (map[string]collectors.Metric, error)
	// Actuators are the table the tick reads, guards and changes targets with.
	Actuators() *actuators.Registry
	// Target reads a target's current state: what the guard measures from,
	// and what input.targets.<name> shows.
	Target(ctx context.Context, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) (*actuators.Target, map[string]any, error)
	// Act carries out a guarded set on a target and returns the part of it
	// that was applied, also when it fails part-way.
	Act(ctx context.Context, t *actuators.Target, set decision.Set) (decision.Set, error)
	// Loop reads another loop of a namespace; nil and no error when there
	// is none.
	Loop(ctx context.Context, namespace, name string) (*v1alpha1.ControlLoop, error)
	// Override merges params into a supervised loop's overrides (a JSON
	// merge patch) and records who wrote them.
	Override(ctx context.Context, by, supervised *v1alpha1.ControlLoop, params map[string]any, source v1alpha1.OverridesSource) error
	// Intend records durably, before any of them changes, that targets
	// change at a time: their cooldowns then hold even when the controller
	// dies before it records the tick. It returns the time recorded: at, or
	// later when the record had to wait, since the cooldowns start from it.
	// Nothing is acted on when it fails.
	Intend(ctx context.Context, loop *v1alpha1.ControlLoop, targets []string, at time.Time) (time.Time, error)
}

// clusterWorld is the controller's World: the API server, for one runner's
// tick.
type clusterWorld struct {
	l *Loops
	r *runner
	// reads are the tick's reads of its targets.
	reads *tickReader
}

// changesLand bounds how long after its intent an action may change its
// target: the actions are cut then. A runner that takes a loop over (a
// restart, a failover, a handover) counts a change recorded less than this
// before as made when it took over: its predecessor may have died acting,
// with its requests still landing after the intent, seconds later on a
// loaded API server (TestCooldownsSurviveSIGKILL saw 2.6 s).
const changesLand = 30 * time.Second

// Intend writes the targets' lastChange to the loop's status (with what
// the runner has not written yet) before they change, no sooner than at.
// The write waits for the loop's status write in flight, if any:
// lastChange is the time it starts, not the tick's. The cooldowns start when it is acknowledged,
// just before the actions, which must then be done within changesLand.
func (w clusterWorld) Intend(ctx context.Context, loop *v1alpha1.ControlLoop, targets []string, at time.Time) (time.Time, error) {
	if wait := time.Until(at); wait > 0 { // a cooldown's end, a few milliseconds away
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return at, ctx.Err()
		}
	}
	next, err := w.l.writes().writeNow(ctx, &w.r.out, loop, func() *v1alpha1.ControlLoopStatus {
		if now := time.Now(); now.After(at) {
			at = now
		}
		next := w.r.status.DeepCopy()
		for _, t := range targets {
			setLastChange(next, t, at)
		}
		return next
	})
	if err != nil {
		return at, err
	}
	// The tick's record starts from r.status, without these: a target the
	// tick then leaves unchanged gets its lastChange back when it is written.
	acked := time.Now()
	w.r.handed, w.r.handedAt = next, acked
	w.r.actBy = at.Add(changesLand)
	return acked, nil
}

// Metrics collects nothing of a loop whose collectors reach outside the
// operator's scope.
func (w clusterWorld) Metrics(ctx context.Context, loop *v1alpha1.ControlLoop, now time.Time) (map[string]collectors.Metric, error) {
	if err := w.l.Scope.Check(loop); err != nil {
		return nil, err
	}
	var source MetricSource = collectors.Set{}
	if w.l.Metrics != nil {
		source = w.l.Metrics
	}
	got := source.Metrics(ctx, loop, now)
	w.r.telemetry.observed(loop, got, now)
	return got, nil
}

func (w clusterWorld) Actuators() *actuators.Registry {
	if w.l.Actuators != nil {
		return w.l.Actuators
	}
	return builtin.Actuators
}

func (w clusterWorld) Target(ctx context.Context, loop *v1alpha1.ControlLoop, t *v1alpha1.TargetSpec) (*actuators.Target, map[string]any, error) {
	var recorded *v1alpha1.TargetStatus
	if w.r.status != nil {
		if i := slices.IndexFunc(w.r.status.Targets, func(s v1alpha1.TargetStatus) bool { return s.Name == t.Name }); i >= 0 {
			recorded = &w.r.status.Targets[i]
		}
	}
	target, doc, err := w.Actuators().Read(ctx, w.reads, loop.Namespace, t, recorded, w.r.docs.last(loop, t.Name))
	if err == nil {
		w.r.telemetry.read(t.Name, doc)
	}
	return target, doc, err
}

func (w clusterWorld) Act(ctx context.Context, t *actuators.Target, set decision.Set) (decision.Set, error) {
	ctx, cancel := context.WithDeadline(ctx, w.r.actBy)
	defer cancel()
	return w.Actuators().Apply(ctx, w.l.Client, t, set)
}

func (w clusterWorld) Loop(ctx context.Context, namespace, name string) (*v1alpha1.ControlLoop, error) {
	var s v1alpha1.ControlLoop
	if err := w.l.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &s, nil
}

// Override writes the supervising loop's own record of its ticks before
// (waiting for its status write in flight) and then the overrides: a crash
// loses no more of its state than the tick that writes them, and an
// override is never newer than its writer's recorded state by more.
func (w clusterWorld) Override(ctx context.Context, by, supervised *v1alpha1.ControlLoop, params map[string]any, source v1alpha1.OverridesSource) error {
	if err := w.l.writes().writeThrough(ctx, &w.r.out, by, w.r.status); err != nil {
		return err
	}
	w.r.handed, w.r.handedAt = w.r.status, time.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"overrides": params, "overridesBy": source}})
	if err != nil {
		return err
	}
	if err := w.l.Client.Status().Patch(ctx, supervised.DeepCopy(), client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	if w.l.Recorder != nil {
		raw, _ := json.Marshal(params)
		w.l.Recorder.Eventf(supervised, by, corev1.EventTypeNormal, "Overridden", "Supervise",
			"params %s set by %s (%s)", string(raw), by.Name, source.Revision)
	}
	return nil
}
