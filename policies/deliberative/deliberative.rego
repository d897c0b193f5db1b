# METADATA
# title: Governor deliberative policy
# description: |
#   Priority rewriting, from the changes the supervised loop applied. Rule
#   "starvation" (the default): when its last `window` applied changes all
#   remedied the same metric while a lower-ranked metric was in violation in
#   every tick they came from, that metric moves one rank up in the supervised
#   loop's priorities. Rule "per_resource_lists" (the Orange/WUT demo's): when
#   one metric was changed `window` times while a lower-ranked one was changed
#   at least once, the least changed of those moves one rank up. No more than
#   one change per min_interval_seconds.
package governor.deliberative

# METADATA
# title: decision
# description: The decision document. Defined for every input.
decision := object.union({"actions": []}, _outcome)

_outcome := {"events": ["No priorities to rewrite"], "state": _state} if {
	count(_priorities) == 0
} else := {"events": ["Holding"], "state": _state} if {
	_holding
} else := {
	"events": [sprintf("Raise %s above %s", [_raised, _passed])],
	"state": object.union(_state, {"last_change": input.time}),
	"params": {"priorities": _new_priorities},
} if {
	_raised
} else := {"events": ["No Event"], "state": _state}

# ---------------------------------------------------------------------------
# Input and params, with defaults.

# Each read by its name: the controller converts for the policy only the
# parts of the input it names (not input.history, say).
_params := v if {
	v := input.params
	is_object(v)
} else := {}

_state := v if {
	v := input.state
	is_object(v)
} else := {}

_supervised := v if {
	v := input.supervised
	is_object(v)
} else := {}

_window := w if {
	w := _params.window
	is_number(w)
	w >= 1
	w == floor(w)
} else := 10

_min_interval_seconds := s if {
	s := _params.min_interval_seconds
	is_number(s)
	s >= 0
} else := 60

# The supervised loop's priorities: strings, duplicates removed (the first
# occurrence counts).
_priorities := [m | some m in _supervised_priorities; is_string(m)] if {
	# The usual list has no duplicates: only filter it (linear; the
	# deduplication below is quadratic).
	count({m | some m in _supervised_priorities}) == count(_supervised_priorities)
} else := [m |
	some i, m in _supervised_priorities
	is_string(m)
	i == min({j | _supervised_priorities[j] == m})
]

_supervised_priorities := p if {
	p := _supervised.params.priorities
	is_array(p)
} else := []

_history := h if {
	h := _supervised.history
	is_array(h)
} else := []

# ---------------------------------------------------------------------------
# Time. A change needs a valid time: input.time_ns, or input.time when there
# is no number; an unparsable state.last_change is ignored. History entries
# are compared by their time_ns, or their time when there is no number.

_now := t if {
	t := input.time_ns
	is_number(t)
} else := _time(input.time)

_entry_time(e) := t if {
	t := e.time_ns
	is_number(t)
} else := _time(e.time)

_last_change := _time(_state.last_change)

_time(t) := time.parse_rfc3339_ns(t) if {
	is_string(t)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`, t)
}

_holding if not _now

_holding if _now - _last_change < _min_interval_seconds * 1000000000

# ---------------------------------------------------------------------------
# The changes applied by the history entries after the last change, each with
# the index of the entry it came from. Decided actions the guard refused or
# found already done (or made while Passive) changed nothing: they do not
# count.

_entries := [e | some e in _history; is_object(e)] if {
	not _last_change
} else := [e |
	some e in _history
	is_object(e)
	_entry_time(e) > _last_change
]

_flat := [[i, a] |
	some i, e in _entries
	is_array(e.applied)
	some a in e.applied
]

# The metric to raise, by the rule (any other than per_resource_lists is
# starvation, the default).
_raised := _raise(object.get(_params, "rule", "starvation"))

_raise("per_resource_lists") := _least_changed

_raise(rule) := _starved[0] if rule != "per_resource_lists"

# ---------------------------------------------------------------------------
# Rule "starvation": the last `window` changes.

_window_actions := array.slice(_flat, count(_flat) - _window, count(_flat)) if {
	count(_flat) >= _window
}

# The one metric all the window's actions remedied.
_hog := m if {
	every p in _window_actions {
		is_string(p[1].metric)
	}
	metrics := {p[1].metric | some p in _window_actions}
	count(metrics) == 1
	some m in metrics
}

_window_entries := {p[0] | some p in _window_actions}

# The rank of each priority (they are unique).
_ranks := {m: i | some i, m in _priorities}

# Metrics ranked below the hog that were in violation in every entry, in
# rank order. The events that count are spelled once per metric, not once
# per entry and metric.
_starved := [l |
	entries := _entries
	window_entries := _window_entries
	some j, l in _priorities
	j > _ranks[_hog]
	violations := {concat(" ", ["High", l]), concat(" ", ["Low", l])}
	count({i |
		some i in window_entries
		some ev in entries[i].events
		ev in violations
	}) == count(window_entries)
]

# ---------------------------------------------------------------------------
# Rule "per_resource_lists": the number of changes of each listed metric
# (its list of change times, of which only the length matters here).

_changes := {m: n |
	flat := _flat
	some m in _priorities
	n := count([i | some i, p in flat; p[1].metric == m])
}

# The highest-ranked metric changed `window` times.
_full := [m | some m in _priorities; _changes[m] >= _window][0]

# Of the metrics ranked below it and changed at least once (and fewer times),
# the least changed; the highest-ranked of those on a tie.
_least_changed := m if {
	changes := _changes
	below := [l | some j, l in _priorities; j > _ranks[_full]; changes[l] > 0; changes[l] < _window]
	fewest := min({changes[l] | some l in below})
	m := [l | some l in below; changes[l] == fewest][0]
}

# ---------------------------------------------------------------------------
# The raised metric swaps with the metric just above it.

_passed := _priorities[_ranks[_raised] - 1]

_new_priorities := array.concat(
	array.concat(array.slice(_priorities, 0, _ranks[_raised] - 1), [_raised, _passed]),
	array.slice(_priorities, _ranks[_raised] + 1, count(_priorities)),
)
