package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"governor.dev/governor/api/v1alpha1"
)

// timeFormat is input.time and history times: RFC 3339 in UTC, milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// timeNs is the instant formatTime writes, in nanoseconds since the Unix epoch: input.time_ns
// and history entries' time_ns, so that a policy compares times without parsing them.
func timeNs(t time.Time) int64 { return t.Truncate(time.Millisecond).UnixNano() }

// decodeJSON decodes an object field of the API (params, state, overrides)
// as the engine takes it; nil or empty is an empty object.
func decodeJSON(j *apiextensionsv1.JSON, what string) (map[string]any, error) {
	if j == nil || len(j.Raw) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(j.Raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s must be an object", what)
	}
	return obj, nil
}

// encodeJSON is the reverse of decodeJSON; nil stays nil.
func encodeJSON(v any) (*apiextensionsv1.JSON, error) {
	if v == nil {
		return nil, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &apiextensionsv1.JSON{Raw: raw}, nil
}

// effectiveParams are spec.policy.params deep-merged with status.overrides,
// the overrides winning.
func effectiveParams(loop *v1alpha1.ControlLoop) (map[string]any, error) {
	params, err := decodeJSON(loop.Spec.Policy.Params, "spec.policy.params")
	if err != nil {
		return nil, err
	}
	overrides, err := decodeJSON(loop.Status.Overrides, "status.overrides")
	if err != nil {
		return nil, err
	}
	return deepMerge(params, overrides), nil
}

// deepMerge merges objects recursively; anything else in patch replaces.
func deepMerge(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		if pm, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = deepMerge(bm, pm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// historyDoc is status.history as input.history shows it.
func historyDoc(history []v1alpha1.HistoryEntry) ([]any, error) {
	out := make([]any, 0, len(history))
	for _, h := range history {
		actions, err := actionsDoc(h.Actions)
		if err != nil {
			return nil, err
		}
		applied, err := actionsDoc(h.Applied)
		if err != nil {
			return nil, err
		}
		entry := map[string]any{
			"time":    formatTime(h.Time.Time),
			"time_ns": timeNs(h.Time.Time),
			"tick":    h.Tick,
			"actions": actions,
			"events":  stringsDoc(h.Events),
			"applied": applied,
		}
		if h.Revision != "" {
			entry["revision"] = h.Revision
		}
		if len(h.Guard) > 0 {
			entry["guard"] = stringsDoc(h.Guard)
		}
		if h.Error != "" {
			entry["error"] = h.Error
		}
		out = append(out, entry)
	}
	return out, nil
}

func actionsDoc(actions []v1alpha1.Action) ([]any, error) {
	out := make([]any, 0, len(actions))
	for _, a := range actions {
		set, err := decodeJSON(&a.Set, "history action set")
		if err != nil {
			return nil, err
		}
		doc := map[string]any{"target": a.Target, "set": set}
		if a.Metric != "" {
			doc["metric"] = a.Metric
		}
		if a.Reason != "" {
			doc["reason"] = a.Reason
		}
		out = append(out, doc)
	}
	return out, nil
}

func stringsDoc(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }
