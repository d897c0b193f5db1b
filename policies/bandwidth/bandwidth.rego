# METADATA
# title: Governor bandwidth policy
# description: |
#   Jitter-driven egress bandwidth for best-effort workloads. The jitter
#   metric is smoothed (EWMA, kept in state); above the target it lowers each
#   best-effort target's egress multiplicatively, well below the target it
#   raises it additively, in between it holds. With a latency target, a
#   latency above it lowers the egress too, whatever the jitter. Never below
#   min or above max; no change within the cooldown of the last one.
package governor.bandwidth

# METADATA
# title: decision
# description: The decision document. Defined for every input.
decision := {"actions": _actions, "events": _events, "state": _out_state} if {
	_value
} else := {"actions": [], "events": [concat(" ", [_unavailable, _jitter])], "state": _state}

# ---------------------------------------------------------------------------
# Input and params, with defaults. Each is a complete rule, evaluated at most
# once per decision, and only when the decision needs it (the low ratio only
# below the target, min, max and the steps only when a target moves). A
# reference into a value of another type (input.params.min when params is a
# string) is undefined, as an absent key is: only what is iterated or
# returned needs its type checked.

_state := s if {
	s := input.state
	is_object(s)
} else := {}

_jitter := j if {
	j := input.params.jitter
	is_string(j)
} else := "jitter"

# The field of the jitter metric read as the jitter: "value" (the Hubble
# collector's mean difference of successive latencies), "p95" (its 95th
# percentile of latency, the deterministic-networking controller's jitter).
_jitter_field := f if {
	f := input.params.jitter_field
	is_string(f)
} else := "value"

# Undefined without a latency target: the latency is then not looked at.
_target_latency_ms := v if {
	v := input.params.target_latency_ms
	is_number(v)
	v >= 0
}

_latency := l if {
	l := input.params.latency
	is_string(l)
} else := "latency"

_latency_field := f if {
	f := input.params.latency_field
	is_string(f)
} else := "value"

_target_ms := v if {
	v := input.params.target_jitter_ms
	is_number(v)
	v >= 0
} else := 2.0

_cooldown_ns := v * 1000000000 if {
	v := input.params.cooldown_seconds
	is_number(v)
	v >= 0
} else := 30000000000

_low_ratio := v if {
	v := input.params.low_ratio
	is_number(v)
	v >= 0
} else := 0.5

# A fraction in (0, 1].
_alpha := v if {
	v := input.params.ewma_alpha
	is_number(v)
	v > 0
	v <= 1
} else := 0.7

_decrease_factor := v if {
	v := input.params.decrease_factor
	is_number(v)
	v > 0
	v <= 1
} else := 0.8

# Quantities in whole bits per second: the default when absent or not a
# quantity.
_min := floor(n) if {
	n := _quantity(input.params.min)
} else := 10000000

_max := floor(n) if {
	n := _quantity(input.params.max)
} else := 1000000000

_increase_step := floor(n) if {
	n := _quantity(input.params.increase_step)
} else := 10000000

# Best-effort target names, duplicates removed (the first occurrence counts).
_names := t if {
	# The usual list has no duplicates: take it as it is (linear; the
	# deduplication below is quadratic).
	t := input.params.targets
	is_array(t)
	count({x | some x in t}) == count(t)
} else := [t |
	targets := input.params.targets
	is_array(targets)
	some i, t in targets
	i == min({j | targets[j] == t})
]

# ---------------------------------------------------------------------------
# The jitter metric and its EWMA.

# The jitter's value when it is a number and not stale; undefined otherwise.
_value := v if {
	m := input.metrics[_jitter]
	v := m[_jitter_field]
	is_number(v)
	object.get(m, "stale", false) != true
}

_unavailable := "Stale" if {
	input.metrics[_jitter].stale == true
} else := "Missing"

# alpha * value + (1 - alpha) * previous, rounded to 1e-6 to keep the stored
# state free of arithmetic noise.
_ewma := _round6(p + (_alpha * (_value - p))) if {
	p := input.state.ewma
	is_number(p)
} else := _value

# x rounded to 6 decimals. An operation on numbers with a fraction is the
# dearest step of a decision (OPA computes it with big.Float and prints the
# result in decimal, dozens of allocations): sprintf, which formats x as a
# float64 and prints it correctly rounded, replaces the three operations
# round(x * 1000000) / 1000000 would take. What it cannot print (-0, numbers
# beyond a float64) takes the arithmetic.
_round6(x) := n if {
	s := sprintf("%v", [x])
	regex.match(`^-?[0-9]+(\.[0-9]{1,6})?$`, s)
	n := to_number(s)
} else := n if {
	n := to_number(trim_suffix(trim_right(sprintf("%.6f", [x]), "0"), "."))
	n != 0
} else := round(x * 1000000) / 1000000

_class := "High" if {
	_ewma > _target_ms
} else := "Low" if {
	_ewma < _target_ms * _low_ratio
} else := "Hold"

# ---------------------------------------------------------------------------
# The latency, against target_latency_ms when there is one: "High" above it,
# "OK" at or below it, "Stale" or "Missing" without a current number, "None"
# without a target. It is compared as observed, not smoothed.

_latency_class := "None" if {
	not _target_latency_ms
} else := c if {
	m := input.metrics[_latency]
	object.get(m, "stale", false) != true
	v := m[_latency_field]
	is_number(v)
	c := {true: "High", false: "OK"}[v > _target_latency_ms]
} else := "Stale" if {
	input.metrics[_latency].stale == true
} else := "Missing"

# Which way the egress moves: down when the jitter or the latency is above
# its target; up when the jitter is low and the latency, if it has a target,
# is known and within it (a missing latency never lets the egress up).
_move := "down" if {
	_class == "High"
} else := "down" if {
	_latency_class == "High"
} else := "up" if {
	_class == "Low"
	_latency_class in {"None", "OK"}
} else := "hold"

# ---------------------------------------------------------------------------
# Time and cooldown. A change needs a valid time to be recorded: input.time_ns,
# or input.time when there is no number. An unparsable state.last_change is
# ignored.

_now := t if {
	t := input.time_ns
	is_number(t)
} else := _time(input.time)

_time(t) := time.parse_rfc3339_ns(t) if {
	is_string(t)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, t)
}

_cooling if not _now

_cooling if _now - _time(input.state.last_change) < _cooldown_ns

# ---------------------------------------------------------------------------
# Actions. The new egress depends only on the current one, and functions are
# memoized per argument within a decision: targets at the same egress share
# one computation, each of the others only looks it up.

# The listed targets that are in input.targets, in order.
_known := [t |
	targets := input.targets
	some t in _names
	is_object(targets[t])
]

_actions := [] if {
	_move == "hold"
} else := [] if {
	_cooling
} else := [{"target": t, "metric": metric, "set": set, "reason": reason} |
	targets := input.targets
	[metric, reason] := _cause
	some t in _known
	set := _set(object.get(targets[t], "bandwidth", null))
	set != false
]

# The metric an action names and its reason: the latency's when it alone
# lowers the egress, else the jitter's.
_cause := [_latency, sprintf("%s %s ms above target %s ms", [_latency_label, _decimal(v), _decimal(_target_latency_ms)])] if {
	_class != "High"
	_latency_class == "High"
	v := input.metrics[_latency][_latency_field]
} else := [_jitter, _reason]

# What an action sets on a target whose bandwidth is bw (input.targets.<t>.
# bandwidth, null when absent); false when there is nothing to change
# (already at the bound). Functions are memoized per argument: targets with
# the same bandwidth share one computation. (Keying it by egress_bps instead,
# a number, took two more builtin calls per target to pick the key, and
# measured 2 more allocations and more time per target than hashing this
# small object.) A function call costs as much as a dozen builtin calls, so
# the usual case, egress_bps a whole number of M moved to another, is one
# body of integer operations.
_set(bw) := {"bandwidth": {"egress": sprintf("%dM", [new / 1000000])}} if {
	x := bw.egress_bps
	is_number(x)
	x == floor(x)
	x % 1000000 == 0
	[factor, step] := _step
	moved := ((x / 1000000) * factor) + step
	moved >= 1000000
	new := min([max([moved - (moved % 1000000), _min]), _max])
	new != x
	new % 1000000 == 0
} else := {"bandwidth": {"egress": _format(new)}} if {
	current := _current(_egress(bw))
	new := min([max([_moved(current), _min]), _max])
	new != current
} else := false

# How a whole number of M moves, as integers: times the first, then divided by a
# million and plus the second. Lowered by a decrease factor of whole millionths
# (0.8 is 800000), raised by a step.
_step := [800000, 0] if {
	_move == "down"
	_decrease_factor == 0.8
} else := [f, 0] if {
	_move == "down"
	f := _decrease_factor * 1000000
	f == floor(f)
} else := [1000000, _increase_step] if {
	_move == "up"
}

# egress_bps, else egress as written; null when there is neither.
_egress(bw) := object.get(bw, "egress_bps", object.get(bw, "egress", null)) if {
	is_object(bw)
} else := null

# Current egress in bits/s; max when absent (or unparsable).
_current(x) := n if {
	n := _quantity(x)
} else := _max

# The egress once lowered by decrease_factor or raised by increase_step,
# rounded down to a whole M when at least 1M, else to whole bits.
_moved(c) := _round_down(c * _decrease_factor) if {
	_move == "down"
} else := _round_down(c + _increase_step)

_round_down(x) := x - (x % 1000000) if {
	x == floor(x)
	x >= 1000000
} else := floor(x / 1000000) * 1000000 if {
	x >= 1000000
} else := floor(x)

_format(v) := sprintf("%dM", [v / 1000000]) if {
	v >= 1000000
	v % 1000000 == 0
} else := sprintf("%d", [v])

# The jitter's field is named when it is not the value: "jitter p95 ewma ...".
_reason := sprintf("%s%s ewma %s ms %s target %s ms", [_jitter, field, _decimal(_ewma), word, _decimal(_target_ms)]) if {
	field := object.get({"value": ""}, _jitter_field, concat("", [" ", _jitter_field]))
	word := {"High": "above", "Low": "below"}[_class]
}

# The latency metric's name in a reason or event, with its field when not the
# value: "latency", "jitter p99".
_latency_label := _latency if {
	_latency_field == "value"
} else := concat(" ", [_latency, _latency_field])

# A number with one to three decimals: 2 -> "2.0", 2.4 -> "2.4", 2.3456 -> "2.346".
# What sprintf prints with one to three decimals, or as a whole number, is
# taken as it is; otherwise c, a whole number of thousandths, is split with
# integer operations only.
_decimal(x) := concat("", [s, {true: "", false: ".0"}[contains(s, ".")]]) if {
	s := sprintf("%v", [x])
	regex.match(`^(-?[0-9]+\.[0-9]{1,3}|0|-?[1-9][0-9]*)$`, s)
} else := concat("", [format_int(x, 10), ".0"]) if {
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

# A quantity as a number: a number >= 0 as it is; a string as Kubernetes
# writes quantities. A whole number with a suffix ("500M", "64Mi") is a
# table lookup and an integer product; anything else goes through
# units.parse, whose decimal arithmetic is dearer.
_quantity(q) := q if {
	is_number(q)
	q >= 0
} else := to_number(digits) * _suffixes[suffix] if {
	is_string(q)
	suffix := trim_left(q, "0123456789")
	digits := trim_suffix(q, suffix)
	digits != ""
} else := units.parse(q) if {
	is_string(q)
	regex.match(`^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|m|[kKMGTPE]i?)?$`, q)
}

_suffixes := {
	"": 1,
	"k": 1000, "K": 1000, "M": 1000000, "G": 1000000000, "T": 1000000000000,
	"P": 1000000000000000, "E": 1000000000000000000,
	"ki": 1024, "Ki": 1024, "Mi": 1048576, "Gi": 1073741824, "Ti": 1099511627776,
	"Pi": 1125899906842624, "Ei": 1152921504606846976,
}

# ---------------------------------------------------------------------------
# Events and state (once the jitter metric is OK).

_events := _class_events if {
	not _cooling
	count(_known) == count(_names)
} else := array.concat(array.concat(_class_events, _cooldown_event), _unknown_events)

# The jitter's class (High or Low <jitter>), then the latency's when it has a
# target and is not within it (High, Stale or Missing <latency>, its field
# after it when not the value: "High jitter p99"); "No Event"
# when neither has one.
_class_events := ["No Event"] if {
	_class == "Hold"
	_latency_class in {"None", "OK"}
} else := [concat(" ", [_class, _jitter])] if {
	_latency_class in {"None", "OK"}
} else := [concat(" ", [_latency_class, _latency_label])] if {
	_class == "Hold"
} else := [concat(" ", [_class, _jitter]), concat(" ", [_latency_class, _latency_label])]

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
