package decision

import (
	"encoding/json"
	"fmt"
)

// Limits bound what one decision may hold, so that no policy can make the
// controller's memory or a loop's status grow without end. A decision over
// a limit breaks the contract: it is rejected whole, naming the limit.
type Limits struct {
	// MaxActions bounds len(actions), MaxEvents len(events).
	MaxActions, MaxEvents int
	// MaxStringBytes bounds each event and each action's target, metric
	// and reason.
	MaxStringBytes int
	// MaxStateBytes bounds state, and params, each encoded as JSON.
	MaxStateBytes int
}

// The default limits: generous for a policy (a loop has at most 100
// targets), small enough that a decision recorded in a loop's history fits
// the status many times over.
const (
	DefaultMaxActions     = 100
	DefaultMaxEvents      = 32
	DefaultMaxStringBytes = 512
	DefaultMaxStateBytes  = 64 << 10
)

// OrDefaults is l with each unset (zero or negative) limit at its default.
func (l Limits) OrDefaults() Limits {
	def := func(v, d int) int {
		if v <= 0 {
			return d
		}
		return v
	}
	return Limits{
		MaxActions:     def(l.MaxActions, DefaultMaxActions),
		MaxEvents:      def(l.MaxEvents, DefaultMaxEvents),
		MaxStringBytes: def(l.MaxStringBytes, DefaultMaxStringBytes),
		MaxStateBytes:  def(l.MaxStateBytes, DefaultMaxStateBytes),
	}
}

// counted is false, with a problem, when raw is an array of more than
// limit items: they are not read one by one (a decision of a million
// actions is one problem, not a million).
func (v *validator) counted(field string, raw any, limit int) bool {
	if list, ok := raw.([]any); ok && len(list) > limit {
		v.fail(field, "%d %s, at most %d allowed", len(list), field, limit)
		return false
	}
	return true
}

// limits checks a decoded decision's strings, state and params against
// the contract's limits.
func (v *validator) limits(d Decision) {
	l := v.contract.Limits.OrDefaults()
	long := func(field, s string) {
		if len(s) > l.MaxStringBytes {
			v.fail(field, "%d bytes long, at most %d allowed", len(s), l.MaxStringBytes)
		}
	}
	for i, e := range d.Events {
		long(fmt.Sprintf("events[%d]", i), e)
	}
	for i, a := range d.Actions {
		long(fmt.Sprintf("actions[%d].target", i), a.Target)
		long(fmt.Sprintf("actions[%d].metric", i), a.Metric)
		long(fmt.Sprintf("actions[%d].reason", i), a.Reason)
	}
	for _, f := range []struct {
		field string
		obj   map[string]any
	}{{"state", d.State}, {"params", d.Params}} {
		field, obj := f.field, f.obj
		if obj == nil {
			continue
		}
		raw, err := json.Marshal(obj)
		if err != nil {
			v.fail(field, "cannot be encoded as JSON: %v", err)
			continue
		}
		if len(raw) > l.MaxStateBytes {
			v.fail(field, "%d bytes as JSON, at most %d allowed", len(raw), l.MaxStateBytes)
		}
	}
}
