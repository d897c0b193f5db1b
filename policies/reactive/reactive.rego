# METADATA
# title: Governor reactive policy
# description: |
#   Threshold classification and priority. Every monitored metric is
#   classified against its threshold; of the metrics in violation only the
#   first by rank (params.priorities) is remedied, one action per tick, in
#   the direction its remedy gives for its status (default: High up, Low
#   down). With act_on "new", only observations not seen at a previous tick
#   are classified: one report, one pass. Keeps no state.
package governor.reactive

# METADATA
# title: decision
# description: The decision document. Defined for every input.
decision := {"actions": [], "events": ["No Event"]} if {
	count(_statuses) == 0
} else := _acting

# ---------------------------------------------------------------------------
# Input, with defaults. Only what is iterated needs its type checked: a
# reference into a value of another type (input.params.remedies.cpu when
# remedies is a string) is undefined, as an absent key is.

_params := p if {
	p := input.params
	is_object(p)
} else := {}

_monitor := m if {
	m := _params.monitor
	is_object(m)
} else := {}

_metrics := m if {
	m := input.metrics
	is_object(m)
} else := {}

# With act_on "new", a value already seen at a previous tick is not
# classified again: the values of a metric's `new` that let it count.
# ({true} with act_on "new", else {true, false}: one body, no else.)
_counted_new := {true, object.get(_params, "act_on", "any") == "new"}

_priorities := p if {
	p := _params.priorities
	is_array(p)
} else := []

# ---------------------------------------------------------------------------
# Classification, in one pass over params.monitor: the status of each
# monitored metric that is not OK. What follows works on this object,
# usually empty.

_statuses := {m: s |
	metrics := _metrics
	some m, spec in _monitor
	is_object(spec)
	s := _status(spec, object.get(metrics, m, {}), object.get(metrics, [m, "value"], null))
}

# Stale, Missing, High or Low; undefined when OK (or already seen, with
# act_on "new").
_status(spec, metric, value) := "Stale" if {
	metric.stale == true
} else := "Missing" if {
	not is_number(value)
} else := "High" if {
	spec.kind == "superior"
	is_number(spec.threshold)
	value > spec.threshold
	object.get(metric, "new", false) in _counted_new
} else := "Low" if {
	spec.kind == "inferior"
	is_number(spec.threshold)
	value < spec.threshold
	object.get(metric, "new", false) in _counted_new
}

# ---------------------------------------------------------------------------
# Rank: the listed metrics in the order of params.priorities (duplicates
# removed, the first occurrence counts), then the others by name.

_listed_set := {m | some m in _priorities}

_listed := _priorities if {
	# The usual list has no duplicates: take it as it is (linear; the
	# deduplication below is quadratic).
	count(_listed_set) == count(_priorities)
} else := [m |
	some i, m in _priorities
	i == min({j | _priorities[j] == m})
]

# ---------------------------------------------------------------------------
# Events and the one action, once some metric is not OK.

_acting := {"actions": actions, "events": array.concat(classification, remedy)} if {
	statuses := _statuses
	ranked := array.concat(
		[m | some m in _listed; statuses[m]],
		sort(object.keys(statuses) - _listed_set),
	)
	violations := [m | some m in ranked; statuses[m] in {"High", "Low"}]
	unavailable := [m | some m in ranked; statuses[m] in {"Missing", "Stale"}]
	classification := [concat(" ", [statuses[m], m]) | some m in array.concat(violations, unavailable)]
	actions := [a | a := _action(violations[0], statuses[violations[0]])]
	remedy := [concat(" ", ["No remedy for", m]) | count(actions) == 0; m := violations[0]]
}

# The remedy of the first violation (m, status s), if it is usable: its
# direction for s is "up" or "down".
_action(m, s) := {
	"target": name,
	"metric": m,
	"set": set,
	"reason": sprintf("%s %v %s threshold %v", [m, _metrics[m].value, {"High": "above", "Low": "below"}[s], _monitor[m].threshold]),
} if {
	rem := _params.remedies[m]
	name := rem.target
	is_string(name)
	target := input.targets[name]
	is_object(target)
	set := _set(rem, target, object.get(rem, ["direction", s], {"High": "up", "Low": "down"}[s]))
}

# scale: replicas. step is a whole number >= 1 (default 1).
_set(rem, target, dir) := {"replicas": _replicas(target.replicas, step, dir)} if {
	rem.scale == "replicas"
	step := object.get(rem, "step", 1)
	is_number(step)
	step == floor(step)
	step >= 1
	is_number(target.replicas)
	target.replicas == floor(target.replicas)
	target.replicas >= 0
}

# scale: cpu or memory, on one container. step is a quantity.
_set(rem, target, dir) := {"resources": {rem.container: _changes(res, rem.scale, step, dir)}} if {
	rem.scale in {"cpu", "memory"}
	is_string(rem.container)
	step := _amount(rem.scale, rem.step)
	step > 0
	res := object.get(target, ["resources", rem.container], {})
}

_replicas(n, step, "up") := round(n + step)

_replicas(n, step, "down") := max([0, round(n - step)])

# Each of requests and limits that has the resource moves by one step;
# when neither has it, requests is set to the step.
_changes(res, r, step, dir) := c if {
	c := {kind: {r: _format(r, _moved(cur, step, dir))} |
		some kind in ["requests", "limits"]
		cur := _current(res, kind, r)
	}
	count(c) > 0
} else := {"requests": {r: _format(r, step)}} if {
	dir in {"up", "down"}
}

# A current amount: the number the controller gives beside the quantity
# (cpu_millis, memory_bytes: {"requests": n, "limits": n}) when there is one,
# else the quantity parsed.
_current(res, kind, r) := n if {
	n := res[_numbers[r]][kind]
	is_number(n)
} else := _amount(r, res[kind][r])

_numbers := {"cpu": "cpu_millis", "memory": "memory_bytes"}

_moved(cur, step, "up") := cur + step

# Down, but never below one step (a value already below it stays).
_moved(cur, step, "down") := max([cur - step, min([cur, step])])

# Amounts: cpu in millicores, memory in bytes, both whole numbers. A whole
# number of millicores ("250m") or with a suffix ("64Mi") takes integer
# operations only: float arithmetic is the dearest step of a decision.
_amount("cpu", q) := to_number(trim_suffix(q, "m")) if {
	is_string(q)
	regex.match(`^[0-9]+m$`, q)
} else := round(_parse(q) * 1000)

_amount("memory", q) := to_number(digits) * _suffixes[suffix] if {
	# The usual step, a whole number with a suffix ("64Mi"), without the
	# call of _parse.
	is_string(q)
	suffix := trim_left(q, "0123456789")
	digits := trim_suffix(q, suffix)
	digits != ""
} else := floor(_parse(q))

_parse(q) := q if {
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

_format("cpu", v) := sprintf("%dm", [v])

_format("memory", v) := sprintf("%dMi", [v / 1048576]) if {
	v % 1048576 == 0
} else := sprintf("%d", [v])
