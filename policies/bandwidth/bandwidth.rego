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
decision := {"actions": _actions, "events": _events, "state": _out_state}

# ---------------------------------------------------------------------------
# Input and params, with defaults.

_params := _object(_input, "params")

_state := _object(_input, "state")

_targets := _object(_input, "targets")

_metrics := _object(_input, "metrics")

# The input document; an empty object when there is none.
_input := i if {
	i := input
	is_object(i)
} else := {}

_object(x, key) := v if {
	v := x[key]
	is_object(v)
} else := {}

_jitter := j if {
	j := _params.jitter
	is_string(j)
} else := "jitter"

_target_ms := _number("target_jitter_ms", 0, 2.0)

_cooldown_seconds := _number("cooldown_seconds", 0, 30)

_low_ratio := _number("low_ratio", 0, 0.5)

_alpha := _fraction("ewma_alpha", 0.7)

_decrease_factor := _fraction("decrease_factor", 0.8)

_min := _bits("min", "10M")

_max := _bits("max", "1000M")

_increase_step := _bits("increase_step", "10M")

# A number param no smaller than low.
_number(key, low, default_value) := v if {
	v := _params[key]
	is_number(v)
	v >= low
} else := default_value

# A number param in (0, 1].
_fraction(key, default_value) := v if {
	v := _params[key]
	is_number(v)
	v > 0
	v <= 1
} else := default_value

# A quantity param in whole bits per second.
_bits(key, default_value) := floor(_parse(_params[key])) if {
	_parse(_params[key])
} else := floor(units.parse(default_value))

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

_metric := _metrics[_jitter]

_status := "Stale" if {
	_metric.stale == true
} else := "Missing" if {
	not _has_value
} else := "OK"

_has_value if is_number(_metric.value)

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

_last_change := _time(_state.last_change)

_time(t) := time.parse_rfc3339_ns(t) if {
	is_string(t)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, t)
}

_cooling if not _now

_cooling if _now - _last_change < _cooldown_seconds * 1000000000

# ---------------------------------------------------------------------------
# Actions.

_actions := [a |
	some t in _names
	is_object(_targets[t])
	a := _action(t)
] if {
	_status == "OK"
	_class in {"High", "Low"}
	not _cooling
} else := []

_action(t) := {
	"target": t,
	"metric": _jitter,
	"set": {"bandwidth": {"egress": _format(new)}},
	"reason": _reason,
} if {
	current := _current(t)
	new := _new(current)
	new != current
}

# Current egress in bits/s; max when absent (or unparsable).
_current(t) := _parse(_targets[t].bandwidth.egress) if {
	_parse(_targets[t].bandwidth.egress)
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
_decimal(x) := concat("", [_sign(c), sprintf("%d.%s", [floor(abs(c) / 1000), _digits(abs(c) % 1000)])]) if {
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
# Events and state.

_events := [sprintf("%s %s", [_status, _jitter])] if {
	_status != "OK"
} else := array.concat(array.concat([_class_event], _cooldown_event), _unknown_events)

_class_event := sprintf("%s %s", [_class, _jitter]) if {
	_class != "Hold"
} else := "No Event"

_cooldown_event := ["Cooldown"] if {
	_cooling
} else := []

_unknown_events := [sprintf("Unknown target %v", [t]) | some t in _names; not _known(t)]

_known(t) if is_object(_targets[t])

_out_state := _state if {
	_status != "OK"
} else := object.union(_state, {"ewma": _ewma, "last_change": input.time}) if {
	count(_actions) > 0
} else := object.union(_state, {"ewma": _ewma})
