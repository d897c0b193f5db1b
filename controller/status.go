package controller

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
)

// defaultHistoryLimit applies when a loop was created without the CRD's
// defaulting.
const defaultHistoryLimit = 20

// record folds a tick into the loop's status: the next status the
// controller owns (observations and overrides belong to others).
func record(loop *v1alpha1.ControlLoop, old *v1alpha1.ControlLoopStatus, res tickResult) (*v1alpha1.ControlLoopStatus, error) {
	st := old.DeepCopy()
	st.Tick = res.entry.Tick
	st.LastTick = &res.entry.Time
	st.Phase = res.phase
	st.ObservedGeneration = loop.Generation
	if res.entry.Revision != "" {
		st.PolicyRevision = res.entry.Revision
	}
	if res.decision != nil && res.decision.State != nil {
		state, err := encodeJSON(res.decision.State)
		if err != nil {
			return nil, fmt.Errorf("policy state: %w", err)
		}
		st.State = state
	}
	limit := int(loop.Spec.HistoryLimit)
	if limit <= 0 {
		limit = defaultHistoryLimit
	}
	st.History = append(st.History, res.entry)
	if len(st.History) > limit {
		st.History = append([]v1alpha1.HistoryEntry(nil), st.History[len(st.History)-limit:]...)
	}
	for name, at := range res.changed {
		setLastChange(st, name, at)
	}
	pruneTargets(st, loop)
	if res.overridden != nil {
		setCondition(st, loop, *res.overridden)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionOverridden)
	}
	setCondition(st, loop, res.policy)
	setCondition(st, loop, readyCondition(res.phase, res.entry))
	return st, nil
}

// paused is the status of a Paused loop: nothing but its phase changes.
func paused(loop *v1alpha1.ControlLoop, old *v1alpha1.ControlLoopStatus) *v1alpha1.ControlLoopStatus {
	st := old.DeepCopy()
	st.Phase = v1alpha1.PhasePaused
	st.ObservedGeneration = loop.Generation
	setCondition(st, loop, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Paused", Message: "spec.state is Paused: the loop neither decides nor acts"})
	return st
}

func setLastChange(st *v1alpha1.ControlLoopStatus, name string, at time.Time) {
	t := metav1.NewMicroTime(at)
	for i := range st.Targets {
		if st.Targets[i].Name == name {
			st.Targets[i].LastChange = &t
			return
		}
	}
	st.Targets = append(st.Targets, v1alpha1.TargetStatus{Name: name, LastChange: &t})
}

// pruneTargets forgets targets the spec no longer declares.
func pruneTargets(st *v1alpha1.ControlLoopStatus, loop *v1alpha1.ControlLoop) {
	kept := st.Targets[:0]
	for _, t := range st.Targets {
		if targetSpec(&loop.Spec, t.Name) != nil {
			kept = append(kept, t)
		}
	}
	st.Targets = kept
}

func setCondition(st *v1alpha1.ControlLoopStatus, loop *v1alpha1.ControlLoop, c metav1.Condition) {
	c.ObservedGeneration = loop.Generation
	if c.Message == "" {
		c.Message = strings.ToLower(c.Reason)
	}
	meta.SetStatusCondition(&st.Conditions, c)
}
