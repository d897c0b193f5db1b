# METADATA
# title: Governor reactive policy
# description: |
#   Threshold classification and priority. Every monitored metric is
#   classified against its threshold; of the metrics in violation only the
#   first by rank (params.priorities) is remedied, one action per tick.
#   Keeps no state.
package governor.reactive

# METADATA
# title: decision
# description: The decision document. Defined for every input.
decision := {"actions": _actions, "events": _events}

# ---------------------------------------------------------------------------
# Input, with defaults. Every value is of the expected type or the default.

_params := _object(_input, "params")

_monitor := _object(_params, "monitor")

_remedies := _object(_params, "remedies")

_metrics := _object(_input, "metrics")

_targets := _object(_input, "targets")

_priorities := p if {
	p := _params.priorities
	is_array(p)
} else := []

# The input document; an empty object when there is none.
_input := i if {
	i := input
	is_object(i)
} else := {}

_object(x, key) := v if {
	v := x[key]
	is_object(v)
} else := {}

# ---------------------------------------------------------------------------
# Classification.

# Monitored metrics: the keys of params.monitor whose spec is an object.
_monitored := {m | some m, spec in _monitor; is_object(spec)}

# Priorities with duplicates removed (the first occurrence counts).
_listed := [m |
	some i, m in _priorities
	is_string(m)
	i == min({j | _priorities[j] == m})
]

# All monitored metrics in rank order: the listed ones in the order of
# params.priorities, then the others by name.
_ranked := array.concat(
	[m | some m in _listed; m in _monitored],
	sort({m | some m in _monitored; not m in _listed}),
)

# Status of each monitored metric, worked out once per decision.
_statuses := {m: _status_of(m) | some m in _monitored}

_status(m) := _statuses[m]

# Status of a monitored metric: Stale, Missing, High, Low or OK.
_status_of(m) := "Stale" if {
	_metrics[m].stale == true
} else := "Missing" if {
	not _has_value(m)
} else := "High" if {
	_monitor[m].kind == "superior"
	_metrics[m].value > _threshold(m)
} else := "Low" if {
	_monitor[m].kind == "inferior"
	_metrics[m].value < _threshold(m)
} else := "OK"

# (A helper: "not is_number(<undefined ref>)" is not true in Rego.)
_has_value(m) if is_number(_metrics[m].value)

_threshold(m) := t if {
	t := _monitor[m].threshold
	is_number(t)
}

_violations := [m | some m in _ranked; _status(m) in {"High", "Low"}]

_unavailable := [m | some m in _ranked; _status(m) in {"Missing", "Stale"}]

_classification := [sprintf("%s %s", [_status(m), m]) |
	some m in array.concat(_violations, _unavailable)
]

# ---------------------------------------------------------------------------
# Events and the one action.

_events := array.concat(_classification, _remedy_events) if {
	count(_classification) > 0
} else := ["No Event"]

_remedy_events := [sprintf("No remedy for %s", [m])] if {
	m := _violations[0]
	not _action(m)
} else := []

_actions := [a] if {
	a := _action(_violations[0])
} else := []

_action(m) := {
	"target": rem.target,
	"metric": m,
	"set": set,
	"reason": _reason(m),
} if {
	rem := _remedies[m]
	is_string(rem.target)
	target := _targets[rem.target]
	is_object(target)
	set := _set(rem, target, _direction[_status(m)])
}

_direction := {"High": 1, "Low": -1}

_reason(m) := sprintf("%s %v %s threshold %v", [m, _metrics[m].value, word, _threshold(m)]) if {
	word := {"High": "above", "Low": "below"}[_status(m)]
}

# scale: replicas. step is a whole number >= 1 (default 1).
_set(rem, target, dir) := {"replicas": max([0, round(target.replicas + (dir * step))])} if {
	rem.scale == "replicas"
	step := object.get(rem, "step", 1)
	_whole(step)
	step >= 1
	_whole(target.replicas)
	target.replicas >= 0
}

# scale: cpu or memory, on one container. step is a quantity.
_set(rem, target, dir) := {"resources": {rem.container: changes}} if {
	rem.scale in {"cpu", "memory"}
	is_string(rem.container)
	step := _amount(rem.scale, rem.step)
	step > 0
	res := _object(_object(target, "resources"), rem.container)
	changes := _changes(res, rem.scale, step, dir)
}

_whole(n) if {
	is_number(n)
	n == floor(n)
}

# Each of requests and limits that has the resource moves by one step;
# when neither has it, requests is set to the step.
_changes(res, r, step, dir) := c if {
	c := {kind: {r: _format(r, _moved(cur, step, dir))} |
		some kind in ["requests", "limits"]
		cur := _amount(r, res[kind][r])
	}
	count(c) > 0
} else := {"requests": {r: _format(r, step)}}

_moved(cur, step, 1) := cur + step

# Down, but never below one step (a value already below it stays).
_moved(cur, step, -1) := max([cur - step, min([cur, step])])

# Amounts: cpu in millicores, memory in bytes, both whole numbers.
_amount("cpu", q) := round(_parse(q) * 1000)

_amount("memory", q) := floor(_parse(q))

_parse(q) := units.parse(q) if {
	is_string(q)
	regex.match(`^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|m|[kKMGTPE]i?)?$`, q)
}

_parse(q) := q if {
	is_number(q)
	q >= 0
}

_format("cpu", v) := sprintf("%dm", [v])

_format("memory", v) := sprintf("%dMi", [v / 1048576]) if {
	v % 1048576 == 0
} else := sprintf("%d", [v])
