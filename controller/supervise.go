package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller/guard"
)

// supervisedLoop reads the loop a Deliberative loop supervises.
func supervisedLoop(ctx context.Context, w World, loop *v1alpha1.ControlLoop) (*v1alpha1.ControlLoop, error) {
	s, err := w.Loop(ctx, loop.Namespace, loop.Spec.Supervises)
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading supervised loop %s/%s: %w", loop.Namespace, loop.Spec.Supervises, err)
	case s == nil:
		return nil, fmt.Errorf("supervised loop %s/%s not found", loop.Namespace, loop.Spec.Supervises)
	}
	return s, nil
}

// supervisedDoc is input.supervised: the supervised loop, its effective
// params, and its history.
func supervisedDoc(s *v1alpha1.ControlLoop) (map[string]any, error) {
	params, err := effectiveParams(s)
	if err != nil {
		return nil, err
	}
	history, err := historyDoc(s.Status.History)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"loop": map[string]any{
			"name": s.Name, "namespace": s.Namespace,
			"kind": string(s.Spec.Kind), "state": string(s.Spec.State),
		},
		"params":  params,
		"history": history,
	}, nil
}

// applyParams writes a Deliberative decision's params into the supervised
// loop's overrides, if the supervised loop allows every key: a merge patch
// of status.overrides (null removes a key), with the revision that wrote it.
func applyParams(ctx context.Context, w World, loop, supervised *v1alpha1.ControlLoop, params map[string]any, revision string, now time.Time, res *tickResult) {
	refuse := func(reason guard.Reason, format string, args ...any) {
		n := guard.Note{Target: supervised.Name, Verdict: guard.Refused, Reason: reason, Message: fmt.Sprintf(format, args...)}
		res.notes = append(res.notes, n)
		res.entry.Guard = append(res.entry.Guard, n.String())
	}
	var denied []string
	for k := range params {
		if !slices.Contains(supervised.Spec.Policy.Overridable, k) {
			denied = append(denied, k)
		}
	}
	if len(denied) > 0 {
		sort.Strings(denied)
		refuse(guard.NotOverridable, "params %v are not overridable (spec.policy.overridable of %s: %v)", denied, supervised.Name, supervised.Spec.Policy.Overridable)
		return
	}
	if loop.Spec.State == v1alpha1.Passive {
		res.entry.Guard = append(res.entry.Guard, "Passive: params not applied to "+supervised.Name)
		return
	}
	source := v1alpha1.OverridesSource{Loop: loop.Name, Revision: revision, Time: metav1.NewMicroTime(now)}
	if err := w.Override(ctx, loop, supervised, params, source); err != nil {
		refuse(guard.OverrideFailed, "writing overrides: %v", err)
		return
	}
	applied, err := encodeJSON(params)
	if err != nil {
		refuse(guard.OverrideFailed, "params: %v", err)
		return
	}
	res.entry.Params = applied
}

// overriddenCondition says whose overrides a loop runs with, and warns when
// the loop that wrote them no longer supervises it: they stay until a user
// clears them.
func overriddenCondition(ctx context.Context, w World, loop *v1alpha1.ControlLoop) *metav1.Condition {
	by := loop.Status.OverridesBy
	if loop.Status.Overrides == nil || by == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionOverridden, Status: metav1.ConditionTrue}
	s, err := w.Loop(ctx, loop.Namespace, by.Loop)
	switch {
	case err == nil && s != nil && s.DeletionTimestamp == nil && s.Spec.Kind == v1alpha1.Deliberative && s.Spec.Supervises == loop.Name:
		c.Reason = "Supervised"
		c.Message = fmt.Sprintf("overrides written by %s (%s)", by.Loop, by.Revision)
	case err != nil:
		c.Reason = "Unknown"
		c.Message = fmt.Sprintf("overrides written by %s (%s); reading it: %v", by.Loop, by.Revision, err)
	default:
		c.Reason = "SupervisorGone"
		c.Message = fmt.Sprintf("overrides written by %s (%s) stay in effect though it no longer supervises this loop; clear them with: "+
			`kubectl patch controlloop %s -n %s --subresource=status --type=merge -p '{"status":{"overrides":null,"overridesBy":null}}'`,
			by.Loop, by.Revision, loop.Name, loop.Namespace)
	}
	return c
}
