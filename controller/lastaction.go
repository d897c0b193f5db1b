package controller

import (
	"strings"

	"governor.dev/governor/api/v1alpha1"
)

// maxActionSummary bounds status.lastAction.summary: a column of kubectl get.
const maxActionSummary = 100

// lastAction sums up a tick that changed something (status.lastAction);
// nil when it changed nothing.
func lastAction(loop *v1alpha1.ControlLoop, entry v1alpha1.HistoryEntry) *v1alpha1.LastAction {
	if len(entry.Applied) == 0 && entry.Params == nil {
		return nil
	}
	var parts []string
	for _, a := range entry.Applied {
		parts = append(parts, a.Target+" "+string(a.Set.Raw))
	}
	if entry.Params != nil {
		parts = append(parts, loop.Spec.Supervises+" params "+string(entry.Params.Raw))
	}
	summary := strings.Join(parts, ", ")
	if len(summary) > maxActionSummary {
		summary = strings.ToValidUTF8(summary[:maxActionSummary-len("…")], "") + "…"
	}
	return &v1alpha1.LastAction{Time: entry.Time, Summary: summary}
}
