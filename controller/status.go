package controller

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// defaultHistoryLimit applies when a loop was created without the CRD's
// defaulting.
const defaultHistoryLimit = 20

// DefaultMaxStatusBytes bounds the status a loop's runner writes, as JSON:
// far under the API server's limit on an object (about 1.5 MiB).
const DefaultMaxStatusBytes = 256 << 10

// record folds a tick into the loop's status: the next status the
// controller owns (observations and overrides belong to others), at most
// maxStatusBytes (DefaultMaxStatusBytes when 0) as JSON. status.lastInput
// is left to the caller (withLastInput): a runner encodes it only into the
// statuses it writes, not at every quiet tick.
func record(loop *v1alpha1.ControlLoop, old *v1alpha1.ControlLoopStatus, res tickResult, maxStatusBytes int) (*v1alpha1.ControlLoopStatus, error) {
	// Statuses are never changed in place once made, only replaced field by
	// field: the new one shares the rest with old, and copies the lists it
	// changes the elements of. A deep copy of each status (its history
	// too) at every tick was a sixth of the memory of 1,000 loops.
	st := new(*old)
	st.Targets = slices.Clone(old.Targets)
	st.Conditions = slices.Clone(old.Conditions)
	st.Tick = res.entry.Tick
	st.LastTick = &res.entry.Time
	st.Phase = res.phase
	st.ObservedGeneration = loop.Generation
	if res.entry.Revision != "" {
		st.PolicyRevision = res.entry.Revision
	}
	if loop.Spec.Policy.Revision != "" {
		st.LastInput = nil // a pinned loop's decisions are no new revision's to make
	}
	if res.seen != nil {
		st.Seen = res.seen
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
	entry := res.entry
	entry.Error = truncate(entry.Error) // an invalid decision lists every problem
	// A list of its own, made once: appending to old's would share its
	// array, and trimming after appending copied the history twice.
	kept := old.History[len(old.History)-min(len(old.History), limit-1):]
	st.History = slices.Concat(kept, []v1alpha1.HistoryEntry{entry})
	for name, at := range res.changed {
		setLastChange(st, name, at)
	}
	recordApplied(st, loop, res.entry.Applied)
	if last := lastAction(loop, res.entry); last != nil {
		st.LastAction = last
	}
	pruneTargets(st, loop)
	if res.overridden != nil {
		setCondition(st, loop, *res.overridden)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionOverridden)
	}
	setCondition(st, loop, res.policy)
	setCondition(st, loop, readyCondition(res))
	st.Bundle = bundleStatus(res.bundle)
	if res.followed {
		setCondition(st, loop, bundleCondition(res.bundle, res.entry.Revision))
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionBundleHealthy)
	}
	fitStatus(st, cmp.Or(maxStatusBytes, DefaultMaxStatusBytes))
	return st, nil
}

// withLastInput sets status.lastInput from the input of the last decision
// made within the contract on the active revision, and keeps the status
// within maxStatusBytes (DefaultMaxStatusBytes when 0).
func withLastInput(st *v1alpha1.ControlLoopStatus, input map[string]any, maxStatusBytes int) {
	maxStatusBytes = cmp.Or(maxStatusBytes, DefaultMaxStatusBytes)
	st.LastInput = lastInput(input, maxStatusBytes)
	fitStatus(st, maxStatusBytes)
}

// fitStatus keeps a status the controller writes under maxBytes as JSON
// (the fields others write aside): it drops the oldest history entries
// first, then, if the newest alone is still too large, its decided actions
// and events, then the applied actions' metrics and reasons (which target
// changed to what, the guard's notes and the error stay). The newest entry
// says what was left out. A status well under the limit (by
// sizeBound) is not encoded at all.
func fitStatus(st *v1alpha1.ControlLoopStatus, maxBytes int) {
	if len(st.History) == 0 || sizeBound(st) <= maxBytes || ownSize(st) <= maxBytes {
		return
	}
	dropped := 0
	for len(st.History) > 1 && ownSize(st) > maxBytes {
		st.History = st.History[1:]
		dropped++
	}
	st.History = slices.Clone(st.History)
	newest := &st.History[len(st.History)-1]
	newest.Guard = slices.Clip(newest.Guard) // the tick's own entry shares it: notes go to a copy
	if dropped > 0 {
		newest.Guard = append(newest.Guard, fmt.Sprintf("Trimmed: the %d oldest history entries dropped to keep the status under %d bytes", dropped, maxBytes))
	}
	if ownSize(st) > maxBytes {
		newest.Actions, newest.Events = nil, nil
		newest.Guard = append(newest.Guard, fmt.Sprintf("Trimmed: this tick's decided actions and events left out of the history to keep the status under %d bytes", maxBytes))
	}
	if ownSize(st) > maxBytes {
		// What changed stays: target and value.
		newest.Applied = slices.Clone(newest.Applied)
		for i := range newest.Applied {
			newest.Applied[i].Metric, newest.Applied[i].Reason = "", ""
		}
		newest.Guard = append(newest.Guard, fmt.Sprintf("Trimmed: the applied actions' metrics and reasons left out of the history to keep the status under %d bytes", maxBytes))
	}
}

// ownSize is the size as JSON of the fields of a status the controller writes.
func ownSize(st *v1alpha1.ControlLoopStatus) int {
	own := *st
	own.Observations, own.Overrides, own.OverridesBy = nil, nil, nil
	raw, _ := json.Marshal(own) // API types always encode
	return len(raw)
}

// sizeBound is at least ownSize, found without encoding: each byte of the
// status's strings and raw JSON counted six times (JSON escapes a byte
// into at most six), and for each object more than its keys, times and
// numbers take.
func sizeBound(st *v1alpha1.ControlLoopStatus) int {
	n := 1024
	str := func(ss ...string) {
		for _, s := range ss {
			n += 6*len(s) + 8
		}
	}
	raw := func(j *apiextensionsv1.JSON) {
		if j != nil {
			n += 6*len(j.Raw) + 8
		}
	}
	str(string(st.Phase), st.PolicyRevision)
	if st.LastAction != nil {
		n += 64
		str(st.LastAction.Summary)
	}
	raw(st.State)
	if b := st.Bundle; b != nil {
		n += 512
		str(b.Name, b.Source, b.ActiveRevision, b.LastError)
	}
	for _, t := range st.Targets {
		n += 128
		str(t.Name)
		raw(t.Applied)
	}
	for _, c := range st.Conditions {
		n += 256
		str(c.Type, string(c.Status), c.Reason, c.Message)
	}
	for i := range st.History {
		h := &st.History[i]
		n += 256
		str(h.Revision, h.Error)
		str(h.Events...)
		str(h.Guard...)
		raw(h.Params)
		for _, list := range [2][]v1alpha1.Action{h.Actions, h.Applied} {
			for i := range list {
				n += 128
				str(list[i].Target, list[i].Metric, list[i].Reason)
				raw(&list[i].Set)
			}
		}
	}
	return n
}

// bundleStatus is a bundle's status as the API shows it.
func bundleStatus(s *bundles.Status) *v1alpha1.BundleStatus {
	if s == nil {
		return nil
	}
	out := &v1alpha1.BundleStatus{
		Name:           s.Name,
		Source:         s.Source,
		ActiveRevision: s.ActiveRevision,
		LastDownload:   optionalTime(s.LastDownload),
		LastActivation: optionalTime(s.LastActivation),
	}
	if s.LastError != nil {
		out.LastError = truncate(s.LastError.Error())
		out.LastErrorTime = optionalTime(s.LastErrorTime)
	}
	return out
}

func optionalTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}

// bundleCondition is BundleHealthy for a followed bundle: False while its
// downloads fail or its newest revision was refused. deciding is the
// revision the loop decides with (the active one, or the one it pins).
func bundleCondition(s *bundles.Status, deciding string) metav1.Condition {
	if deciding == "" {
		deciding = "none"
	}
	c := metav1.Condition{Type: v1alpha1.ConditionBundleHealthy, Status: metav1.ConditionTrue, Reason: "Current",
		Message: fmt.Sprintf("%s is active, from %s; deciding with %s", s.ActiveRevision, s.Source, deciding)}
	var gate *bundles.GateError
	var download *bundles.DownloadError
	var held *bundles.HeldError
	switch {
	case errors.As(s.LastError, &gate):
		c.Status, c.Reason = metav1.ConditionFalse, "RevisionRefused"
	case errors.As(s.LastError, &held):
		c.Status, c.Reason = metav1.ConditionFalse, "RevisionHeld"
	case errors.As(s.LastError, &download):
		c.Status, c.Reason = metav1.ConditionFalse, "DownloadFailing"
	case s.ActiveRevision == "":
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "Waiting", "waiting for the first download from "+s.Source
	}
	if c.Status == metav1.ConditionFalse && s.LastError != nil {
		c.Message = fmt.Sprintf("%v (deciding with: %s)", s.LastError, deciding)
	}
	return c
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
	st.Targets = slices.DeleteFunc(st.Targets, func(t v1alpha1.TargetStatus) bool {
		return !slices.ContainsFunc(loop.Spec.Targets, func(s v1alpha1.TargetSpec) bool { return s.Name == t.Name })
	})
}

func setCondition(st *v1alpha1.ControlLoopStatus, loop *v1alpha1.ControlLoop, c metav1.Condition) {
	c.ObservedGeneration = loop.Generation
	if c.Message == "" {
		c.Message = strings.ToLower(c.Reason)
	}
	c.Message = truncate(c.Message)
	meta.SetStatusCondition(&st.Conditions, c)
}

// maxMessage bounds the messages status carries (a refused bundle's
// compile errors can be long; the API caps a condition's at 32 KiB).
const maxMessage = 4096

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return strings.ToValidUTF8(s[:maxMessage], "") + " …(truncated)"
}

// recordApplied keeps, for each External target a tick applied something to,
// what it applied merged over what was applied before (a JSON merge patch):
// a system outside Kubernetes may not say its own state, and nothing else
// holds it.
func recordApplied(st *v1alpha1.ControlLoopStatus, loop *v1alpha1.ControlLoop, applied []v1alpha1.Action) {
	for _, a := range applied {
		i := slices.IndexFunc(loop.Spec.Targets, func(t v1alpha1.TargetSpec) bool { return t.Name == a.Target })
		if i < 0 || !actuators.IsExternal(&loop.Spec.Targets[i]) {
			continue
		}
		j := slices.IndexFunc(st.Targets, func(t v1alpha1.TargetStatus) bool { return t.Name == a.Target })
		if j < 0 {
			st.Targets = append(st.Targets, v1alpha1.TargetStatus{Name: a.Target})
			j = len(st.Targets) - 1
		}
		merged := a.Set.Raw
		if before := st.Targets[j].Applied; before != nil {
			if m, err := jsonpatch.MergePatch(before.Raw, a.Set.Raw); err == nil {
				merged = m
			}
		}
		st.Targets[j].Applied = &apiextensionsv1.JSON{Raw: merged}
	}
}
