# METADATA
# title: Governor bandwidth policy
# description: |
#   Jitter-driven egress bandwidth for best-effort workloads. The jitter
#   metric is smoothed (EWMA, kept in state); above the target it lowers each
#   best-effort target's egress multiplicatively, well below the target it
#   raises it additively, in between it holds. Never below min or above max;
#   no change within the cooldown of the last one.
package governor.bandwidth

# METADATA
# title: decision
# description: The decision document. Defined for every input.
decision := {"actions": [], "events": [concat(" ", [_status, _jitter])], "state": _state} if {
	_status != "OK"
} else := {"actions": _actions, "events": _events, "state": _out_state}

# ---------------------------------------------------------------------------
# Input and params, with defaults. Each is a complete rule, evaluated at most
# once per decision, and only when the decision needs it (min, max and the
# increase step only when a target moves).

_params := p if {
	p := input.params
	is_object(p)
} else := {}

_state := s if {
	s := input.state
	is_object(s)
} else := {}

_targets := t if {
	t := input.targets
	is_object(t)
} else := {}

_jitter := j if {
	j := _params.jitter
	is_string(j)
} else := "jitter"

_target_ms := v if {
	v := _params.target_jitter_ms
	is_number(v)
	v >= 0
} else := 2.0

_cooldown_seconds := v if {
	v := _params.cooldown_seconds
	is_number(v)
	v >= 0
} else := 30

_low_ratio := v if {
	v := _params.low_ratio
	is_number(v)
	v >= 0
} else := 0.5

# A fraction in (0, 1].
_alpha := v if {
	v := _params.ewma_alpha
	is_number(v)
	v > 0
	v <= 1
} else := 0.7

_decrease_factor := v if {
	v := _params.decrease_factor
	is_number(v)
	v > 0
	v <= 1
} else := 0.8

# Quantities in whole bits per second. Absent, the usual case, is the
# default at once, with no parsing.
_min := _bits(object.get(_params, "min", null), 10000000)

_max := _bits(object.get(_params, "max", null), 1000000000)

_increase_step := _bits(object.get(_params, "increase_step", null), 10000000)

_bits(q, default_value) := default_value if {
	q == null
} else := floor(_parse(q)) if {
	_parse(q)
} else := default_value

# Best-effort target names, duplicates removed (the first occurrence counts).
_names := _params.targets if {
	# The usual list has no duplicates: take it as it is (linear; the
	# deduplication below is quadratic).
	is_array(_params.targets)
	count({t | some t in _params.targets}) == count(_params.targets)
} else := [t |
	some i, t in _params.targets
	is_array(_params.targets)
	i == min({j | _params.targets[j] == t})
]

# ---------------------------------------------------------------------------
# The jitter metric and its EWMA.

_metric := input.metrics[_jitter]

_status := "Stale" if {
	_metric.stale == true
} else := "Missing" if {
	not _valued
} else := "OK"

_valued if is_number(_metric.value)

# Rounded to 1e-6 to keep the stored state free of arithmetic noise.
_ewma := round(((_alpha * _metric.value) + ((1 - _alpha) * _state.ewma)) * 1000000) / 1000000 if {
	is_number(_state.ewma)
} else := _metric.value

_class := "High" if {
	_ewma > _target_ms
} else := "Low" if {
	_ewma < _target_ms * _low_ratio
} else := "Hold"

# ---------------------------------------------------------------------------
# Time and cooldown. A change needs a valid input.time to be recorded; an
# unparsable state.last_change is ignored.

_now := _time(input.time)

_time(t) := time.parse_rfc3339_ns(t) if {
	is_string(t)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, t)
}

_cooling if not _now

_cooling if _now - _time(_state.last_change) < _cooldown_seconds * 1000000000

# ---------------------------------------------------------------------------
# Actions. The new egress depends only on the current one, and functions are
# memoized per argument within a decision: targets at the same egress share
# one computation, each of the others only looks it up.

# The listed targets that are in input.targets, in order.
_known := [t |
	targets := _targets
	some t in _names
	is_object(targets[t])
]

_actions := [] if {
	_class == "Hold"
} else := [] if {
	_cooling
} else := [{"target": t, "metric": jitter, "set": set, "reason": reason} |
	targets := _targets
	jitter := _jitter
	reason := _reason
	some t in _known
	set := _set(object.get(targets[t], ["bandwidth", "egress"], null))
	set != false
]

# What an action sets on a target whose egress is q (as written, null when
# absent); false when there is nothing to change (already at the bound).
_set(q) := {"bandwidth": {"egress": _format(new)}} if {
	current := _current(q)
	new := _new(current)
	new != current
} else := false

# Current egress in bits/s; max when absent (or unparsable).
_current(q) := _parse(q) if {
	_parse(q)
} else := _max

_new(current) := _clamp(_round_down(current * _decrease_factor)) if _class == "High"

_new(current) := _clamp(_round_down(current + _increase_step)) if _class == "Low"

# Whole M when at least 1M, else whole bits.
_round_down(x) := floor(x / 1000000) * 1000000 if {
	x >= 1000000
} else := floor(x)

_clamp(x) := min([max([x, _min]), _max])

_format(v) := sprintf("%dM", [v / 1000000]) if {
	v >= 1000000
	v % 1000000 == 0
} else := sprintf("%d", [v])

_reason := sprintf("%s ewma %s ms %s target %s ms", [_jitter, _decimal(_ewma), word, _decimal(_target_ms)]) if {
	word := {"High": "above", "Low": "below"}[_class]
}

# A number with one to three decimals: 2 -> "2.0", 2.4 -> "2.4", 2.3456 -> "2.346".
# Float arithmetic is the dearest step in Rego (an integer operation is several
# times cheaper): a whole number takes no arithmetic at all, and c, a whole
# number of thousandths, is split with integer operations only.
_decimal(x) := concat("", [format_int(x, 10), ".0"]) if {
	x == floor(x)
} else := concat("", [_sign(c), format_int((abs(c) - (abs(c) % 1000)) / 1000, 10), ".", _digits(abs(c) % 1000)]) if {
	c := round(x * 1000)
}

_sign(c) := "-" if {
	c < 0
} else := ""

_digits(f) := trimmed if {
	trimmed := trim_right(sprintf("%03d", [f]), "0")
	trimmed != ""
} else := "0"

_parse(q) := units.parse(q) if {
	is_string(q)
	regex.match(`^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|m|[kKMGTPE]i?)?$`, q)
}

_parse(q) := q if {
	is_number(q)
	q >= 0
}

# ---------------------------------------------------------------------------
# Events and state (once the jitter metric is OK).

_events := array.concat(array.concat([_class_event], _cooldown_event), _unknown_events)

_class_event := concat(" ", [_class, _jitter]) if {
	_class != "Hold"
} else := "No Event"

_cooldown_event := ["Cooldown"] if {
	_cooling
} else := []

_unknown_events := [] if {
	count(_known) == count(_names)
} else := [sprintf("Unknown target %v", [t]) |
	known := {t | some t in _known}
	some t in _names
	not t in known
]

_out_state := object.union(_state, {"ewma": _ewma, "last_change": input.time}) if {
	count(_actions) > 0
} else := object.union(_state, {"ewma": _ewma})
