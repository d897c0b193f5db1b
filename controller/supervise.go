package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller/guard"
)

// supervisedLoop reads the loop a Deliberative loop supervises.
func (l *Loops) supervisedLoop(ctx context.Context, loop *v1alpha1.ControlLoop) (*v1alpha1.ControlLoop, error) {
	var s v1alpha1.ControlLoop
	key := types.NamespacedName{Namespace: loop.Namespace, Name: loop.Spec.Supervises}
	if err := l.Client.Get(ctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("supervised loop %s not found", key)
		}
		return nil, fmt.Errorf("reading supervised loop %s: %w", key, err)
	}
	return &s, nil
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
func (l *Loops) applyParams(ctx context.Context, loop, supervised *v1alpha1.ControlLoop, params map[string]any, revision string, now time.Time, res *tickResult) {
	refuse := func(format string, args ...any) {
		n := guard.Note{Target: supervised.Name, Verdict: guard.Refused, Message: fmt.Sprintf(format, args...)}
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
		refuse("params %v are not overridable (spec.policy.overridable of %s: %v)", denied, supervised.Name, supervised.Spec.Policy.Overridable)
		return
	}
	if loop.Spec.State == v1alpha1.Passive {
		res.entry.Guard = append(res.entry.Guard, "Passive: params not applied to "+supervised.Name)
		return
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"overrides":   params,
		"overridesBy": v1alpha1.OverridesSource{Loop: loop.Name, Revision: revision, Time: metav1.NewMicroTime(now)},
	}})
	if err != nil {
		refuse("params: %v", err)
		return
	}
	if err := l.Client.Status().Patch(ctx, supervised.DeepCopy(), client.RawPatch(types.MergePatchType, patch)); err != nil {
		refuse("writing overrides: %v", err)
		return
	}
	applied, err := encodeJSON(params)
	if err != nil {
		refuse("params: %v", err)
		return
	}
	res.entry.Params = applied
	if l.Recorder != nil {
		l.Recorder.Eventf(supervised, loop, corev1.EventTypeNormal, "Overridden", "Supervise",
			"params %s set by %s (%s)", string(applied.Raw), loop.Name, revision)
	}
}

// overriddenCondition says whose overrides a loop runs with, and warns when
// the loop that wrote them no longer supervises it: they stay until a user
// clears them.
func (l *Loops) overriddenCondition(ctx context.Context, loop *v1alpha1.ControlLoop) *metav1.Condition {
	by := loop.Status.OverridesBy
	if loop.Status.Overrides == nil || by == nil {
		return nil
	}
	c := &metav1.Condition{Type: v1alpha1.ConditionOverridden, Status: metav1.ConditionTrue}
	var s v1alpha1.ControlLoop
	err := l.Client.Get(ctx, types.NamespacedName{Namespace: loop.Namespace, Name: by.Loop}, &s)
	switch {
	case err == nil && s.DeletionTimestamp == nil && s.Spec.Kind == v1alpha1.Deliberative && s.Spec.Supervises == loop.Name:
		c.Reason = "Supervised"
		c.Message = fmt.Sprintf("overrides written by %s (%s)", by.Loop, by.Revision)
	case err != nil && !apierrors.IsNotFound(err):
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
