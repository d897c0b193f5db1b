package governor.deliberative_test

import data.governor.deliberative

# A supervised history entry at 10:00:<sec> with one action remedying metric,
# decided and applied.
entry(sec, metric, events) := {
	"time": sprintf("2026-11-21T10:00:%02dZ", [sec]),
	"tick": sec,
	"actions": [action(metric)],
	"events": events,
	"applied": [action(metric)],
}

action(metric) := {"target": "web", "metric": metric, "set": {"replicas": 4}, "reason": "r"}

# The same, decided but not applied (refused by the guard, or already done).
refused(sec, metric, events) := object.union(entry(sec, metric, events), {"applied": [], "guard": ["Refused web: in cooldown"]})

# n entries (seconds 1..n) remedying metric with these events.
entries(n, metric, events) := [entry(sec, metric, events) | some sec in numbers.range(1, n)]

starving := entries(3, "cpu", ["High cpu", "High memory"])

base := {
	"loop": {"name": "factory-priorities", "namespace": "factory", "kind": "Deliberative", "state": "Running"},
	"time": "2026-11-21T10:10:00Z",
	"tick": 40,
	"params": {"window": 3, "min_interval_seconds": 60},
	"metrics": {},
	"targets": {},
	"state": {},
	"history": [],
	"supervised": {
		"loop": {"name": "web-scaling", "namespace": "factory", "kind": "Reactive", "state": "Running"},
		"params": {"priorities": ["cpu", "memory", "disk"]},
		"history": starving,
	},
}

with_history(h) := object.union(base, {"supervised": {"history": h}})

with_priorities(p, h) := object.union(base, {"supervised": {"params": {"priorities": p}, "history": h}})

no_change := {"actions": [], "events": ["No Event"], "state": {}}

# ---------------------------------------------------------------------------
# Always an object; actions always [].

test_empty_input if {
	d := deliberative.decision with input as {}
	d == {"actions": [], "events": ["No priorities to rewrite"], "state": {}}
}

test_input_not_an_object if {
	d := deliberative.decision with input as 42
	d == {"actions": [], "events": ["No priorities to rewrite"], "state": {}}
}

test_no_supervised if {
	d := deliberative.decision with input as json.remove(base, ["supervised"])
	d == {"actions": [], "events": ["No priorities to rewrite"], "state": {}}
}

test_no_priorities if {
	d1 := deliberative.decision with input as json.remove(base, ["supervised/params/priorities"])
	d1.events == ["No priorities to rewrite"]
	d2 := deliberative.decision with input as with_priorities([], starving)
	d2.events == ["No priorities to rewrite"]
	d3 := deliberative.decision with input as with_priorities("cpu,memory", starving)
	d3.events == ["No priorities to rewrite"]
	d4 := deliberative.decision with input as with_priorities([1, 2], starving)
	d4.events == ["No priorities to rewrite"]
}

# ---------------------------------------------------------------------------
# Rewriting.

test_starvation_raises_memory_above_cpu if {
	d := deliberative.decision with input as base
	d == {
		"actions": [],
		"events": ["Raise memory above cpu"],
		"params": {"priorities": ["memory", "cpu", "disk"]},
		"state": {"last_change": "2026-11-21T10:10:00Z"},
	}
}

test_low_violation_counts if {
	d := deliberative.decision with input as with_history(entries(3, "cpu", ["High cpu", "Low memory"]))
	d.params == {"priorities": ["memory", "cpu", "disk"]}
}

test_fewer_than_window_actions if {
	d := deliberative.decision with input as with_history(entries(2, "cpu", ["High cpu", "High memory"]))
	d == no_change
}

test_no_history if {
	d := deliberative.decision with input as json.remove(base, ["supervised/history"])
	d == no_change
}

test_mixed_metrics_in_window if {
	h := array.concat(entries(2, "cpu", ["High cpu", "High memory"]), [entry(3, "memory", ["High memory"])])
	d := deliberative.decision with input as with_history(h)
	d == no_change
}

test_only_the_last_window_actions_count if {
	# A memory action and a tick without a memory violation, both before the window.
	h := array.concat([entry(1, "memory", ["High memory"]), entry(2, "cpu", ["High cpu"])], [
		entry(3, "cpu", ["High cpu", "High memory"]),
		entry(4, "cpu", ["High cpu", "High memory"]),
		entry(5, "cpu", ["High cpu", "High memory"]),
	])
	d := deliberative.decision with input as with_history(h)
	d.events == ["Raise memory above cpu"]
}

test_lower_metric_not_violating_in_every_entry if {
	h := [
		entry(1, "cpu", ["High cpu", "High memory"]),
		entry(2, "cpu", ["High cpu"]),
		entry(3, "cpu", ["High cpu", "High memory"]),
	]
	d := deliberative.decision with input as with_history(h)
	d == no_change
}

test_window_counts_actions_not_entries if {
	both := [
		{"target": "web", "metric": "cpu", "set": {"replicas": 4}},
		{"target": "web", "metric": "cpu", "set": {"replicas": 5}},
	]
	two := object.union(entry(2, "cpu", ["High cpu", "High memory"]), {"actions": both, "applied": both})

	# Entry 1 lacks the memory violation but its action is outside the window.
	h := [entry(1, "cpu", ["High cpu"]), two, entry(3, "cpu", ["High cpu", "High memory"])]
	d := deliberative.decision with input as with_history(h)
	d.events == ["Raise memory above cpu"]
}

test_entries_without_actions_are_skipped if {
	h := array.concat(starving, [
		{"time": "2026-11-21T10:00:04Z", "actions": [], "events": ["No Event"], "applied": []},
		{"time": "2026-11-21T10:00:05Z", "events": ["No Event"]},
		{"time": "2026-11-21T10:00:06Z", "actions": [], "events": ["No Event"], "applied": {"a": 1}},
		"not an entry",
	])
	d := deliberative.decision with input as with_history(h)
	d.events == ["Raise memory above cpu"]
}

test_action_without_metric if {
	h := array.concat(entries(2, "cpu", ["High cpu", "High memory"]), [json.remove(entry(3, "cpu", ["High cpu", "High memory"]), ["applied/0/metric"])])
	d := deliberative.decision with input as with_history(h)
	d == no_change
}

test_several_starved_highest_ranked_moves if {
	d := deliberative.decision with input as with_history(entries(3, "cpu", ["High cpu", "High disk", "High memory"]))
	d.events == ["Raise memory above cpu"]
	d.params.priorities == ["memory", "cpu", "disk"]
}

test_starved_swaps_with_the_metric_just_above if {
	d := deliberative.decision with input as with_history(entries(3, "cpu", ["High cpu", "Low disk"]))
	d.events == ["Raise disk above memory"]
	d.params.priorities == ["cpu", "disk", "memory"]
}

test_hog_in_the_middle if {
	d := deliberative.decision with input as with_history(entries(3, "memory", ["High memory", "High cpu", "High disk"]))
	d.events == ["Raise disk above memory"]
	d.params.priorities == ["cpu", "disk", "memory"]
}

test_hog_ranked_last_no_change if {
	d := deliberative.decision with input as with_history(entries(3, "disk", ["High disk", "High cpu", "High memory"]))
	d == no_change
}

test_hog_not_in_priorities_no_change if {
	d := deliberative.decision with input as with_history(entries(3, "net", ["High net", "High memory"]))
	d == no_change
}

test_violation_of_unlisted_metric_ignored if {
	d := deliberative.decision with input as with_history(entries(3, "cpu", ["High cpu", "High net"]))
	d == no_change
}

test_events_not_an_array if {
	d := deliberative.decision with input as with_history(entries(3, "cpu", "High memory"))
	d == no_change
}

test_duplicate_priorities_are_removed if {
	d := deliberative.decision with input as with_priorities(["cpu", "cpu", "memory", 3, "disk", "memory"], starving)
	d.params.priorities == ["memory", "cpu", "disk"]
}

test_default_window_is_ten if {
	inp9 := json.remove(with_history(entries(9, "cpu", ["High cpu", "High memory"])), ["params/window"])
	d9 := deliberative.decision with input as inp9
	d9 == no_change
	inp10 := json.remove(with_history(entries(10, "cpu", ["High cpu", "High memory"])), ["params/window"])
	d10 := deliberative.decision with input as inp10
	d10.events == ["Raise memory above cpu"]
}

test_bad_window_falls_back_to_ten if {
	d1 := deliberative.decision with input as object.union(base, {"params": {"window": 0}})
	d1 == no_change
	d2 := deliberative.decision with input as object.union(base, {"params": {"window": 2.5}})
	d2 == no_change
	d3 := deliberative.decision with input as object.union(base, {"params": {"window": "3"}})
	d3 == no_change
}

# ---------------------------------------------------------------------------
# Minimum interval and last_change.

after_change := array.concat(
	[entry(sec, "memory", ["High memory"]) | some sec in numbers.range(1, 5)],
	[entry(sec, "cpu", ["High cpu", "High memory"]) | some sec in numbers.range(6, 8)],
)

test_min_interval_holding if {
	inp := object.union(with_history(after_change), {"state": {"last_change": "2026-11-21T10:09:00.001Z"}})
	d := deliberative.decision with input as inp
	d == {"actions": [], "events": ["Holding"], "state": {"last_change": "2026-11-21T10:09:00.001Z"}}
}

test_min_interval_just_outside if {
	inp := object.union(with_history(after_change), {"state": {"last_change": "2026-11-21T10:00:05Z"}, "time": "2026-11-21T10:01:05Z"})
	d := deliberative.decision with input as inp
	d.events == ["Raise memory above cpu"]
	d.state == {"last_change": "2026-11-21T10:01:05Z"}
}

test_min_interval_param if {
	inp := object.union(with_history(after_change), {
		"params": {"min_interval_seconds": 600},
		"state": {"last_change": "2026-11-21T10:00:05Z"},
	})
	d := deliberative.decision with input as inp
	d.events == ["Holding"]
	not d.params
}

test_bad_min_interval_falls_back_to_sixty if {
	inp := object.union(with_history(after_change), {
		"params": {"min_interval_seconds": -5},
		"state": {"last_change": "2026-11-21T10:09:30Z"},
	})
	d := deliberative.decision with input as inp
	d.events == ["Holding"]
}

test_history_before_last_change_ignored if {
	# Only entries 6..8 count; entry 5 (at last_change) does not.
	h := array.concat(
		[entry(sec, "cpu", ["High cpu", "High memory"]) | some sec in numbers.range(1, 5)],
		[entry(sec, "cpu", ["High cpu", "High memory"]) | some sec in numbers.range(6, 7)],
	)
	inp := object.union(with_history(h), {"state": {"last_change": "2026-11-21T10:00:05Z"}})
	d := deliberative.decision with input as inp
	d == {"actions": [], "events": ["No Event"], "state": {"last_change": "2026-11-21T10:00:05Z"}}
}

test_history_after_last_change_used if {
	inp := object.union(with_history(after_change), {"state": {"last_change": "2026-11-21T10:00:05Z", "round": 2}})
	d := deliberative.decision with input as inp
	d == {
		"actions": [],
		"events": ["Raise memory above cpu"],
		"params": {"priorities": ["memory", "cpu", "disk"]},
		"state": {"last_change": "2026-11-21T10:10:00Z", "round": 2},
	}
}

test_entries_with_bad_time_ignored_after_a_change if {
	h := array.concat(after_change, [object.union(entry(9, "memory", ["High memory"]), {"time": "later"})])
	inp := object.union(with_history(h), {"state": {"last_change": "2026-11-21T10:00:05Z"}})
	d := deliberative.decision with input as inp
	d.events == ["Raise memory above cpu"]
}

test_unparsable_last_change_is_ignored if {
	inp := object.union(base, {"state": {"last_change": "a while ago"}})
	d := deliberative.decision with input as inp
	d.events == ["Raise memory above cpu"]
	d.state == {"last_change": "2026-11-21T10:10:00Z"}
}

test_no_valid_time_holds if {
	d1 := deliberative.decision with input as json.remove(base, ["time"])
	d1 == {"actions": [], "events": ["Holding"], "state": {}}
	d2 := deliberative.decision with input as object.union(base, {"time": 1234})
	d2.events == ["Holding"]
}

test_state_not_an_object if {
	d := deliberative.decision with input as object.union(base, {"state": ["x"]})
	d.state == {"last_change": "2026-11-21T10:10:00Z"}
}

# The numbers the controller gives beside the times (input.time_ns, the
# history entries' time_ns) decide as the times do, and win over them.
test_numbers_beside_times if {
	inp := object.union(base, {"time_ns": 1795255800000000000})
	d := deliberative.decision with input as inp
	d.events == ["Raise memory above cpu"]
	held := deliberative.decision with input as object.union(inp, {"time_ns": 1795255200000000000, "state": {"last_change": "2026-11-21T09:59:30Z"}})
	held.events == ["Holding"]

	# By their times, no entry is after the last change; by their time_ns, all are.
	late := [object.union(e, {"time_ns": 1795255560000000000}) | some e in starving]
	after := object.union(inp, {"supervised": {"history": late}, "state": {"last_change": "2026-11-21T10:05:00Z"}})
	raised := deliberative.decision with input as after
	raised.events == ["Raise memory above cpu"]
	early := [object.union(e, {"time_ns": 1}) | some e in starving]
	none := deliberative.decision with input as object.union(after, {"supervised": {"history": early}})
	none.events == ["No Event"]
}

# ---------------------------------------------------------------------------
# Only applied changes count.

test_refused_actions_do_not_count if {
	# Three decided cpu actions, the last refused: two changes, fewer than the window.
	h := array.concat(entries(2, "cpu", ["High cpu", "High memory"]), [refused(3, "cpu", ["High cpu", "High memory"])])
	d := deliberative.decision with input as with_history(h)
	d == no_change

	# A fourth, applied: the window is the three applied ones.
	d2 := deliberative.decision with input as with_history(array.concat(h, [entry(4, "cpu", ["High cpu", "High memory"])]))
	d2.events == ["Raise memory above cpu"]
}

test_one_report_decided_again_and_again_counts_once if {
	# The supervised loop decided the same change at every tick; only the first changed anything.
	h := array.concat([entry(1, "cpu", ["High cpu", "High memory"])], [refused(sec, "cpu", ["High cpu", "High memory"]) | some sec in numbers.range(2, 10)])
	d := deliberative.decision with input as with_history(h)
	d == no_change
}

# ---------------------------------------------------------------------------
# Rule per_resource_lists (the Orange/WUT demo's deliberative loop).

lists(h) := object.union(with_history(h), {"params": {"rule": "per_resource_lists", "window": 3}})

test_lists_raise_the_less_changed_metric if {
	# cpu changed 3 times, memory once; memory was not in violation at each of them.
	h := [
		entry(1, "cpu", ["Low cpu"]),
		entry(2, "memory", ["Low memory"]),
		entry(3, "cpu", ["Low cpu"]),
		entry(4, "cpu", ["Low cpu"]),
	]
	d := deliberative.decision with input as lists(h)
	d == {
		"actions": [],
		"events": ["Raise memory above cpu"],
		"params": {"priorities": ["memory", "cpu", "disk"]},
		"state": {"last_change": "2026-11-21T10:10:00Z"},
	}

	# The starvation rule, on the same history: the window is not all cpu.
	d2 := deliberative.decision with input as with_history(h)
	d2 == no_change
}

test_lists_need_the_other_metric_changed_once if {
	d := deliberative.decision with input as lists(entries(5, "cpu", ["Low cpu", "Low memory"]))
	d == no_change
}

test_lists_need_a_full_list if {
	h := [entry(1, "cpu", ["Low cpu"]), entry(2, "memory", ["Low memory"]), entry(3, "cpu", ["Low cpu"])]
	d := deliberative.decision with input as lists(h)
	d == no_change
}

test_lists_count_only_applied_changes if {
	h := [entry(1, "cpu", ["Low cpu"]), entry(2, "memory", ["Low memory"]), entry(3, "cpu", ["Low cpu"]), refused(4, "cpu", ["Low cpu"])]
	d := deliberative.decision with input as lists(h)
	d == no_change
}

test_lists_least_changed_below_moves if {
	# cpu full; memory changed twice, disk once: disk moves up, above memory.
	h := [
		entry(1, "memory", ["Low memory"]),
		entry(2, "disk", ["Low disk"]),
		entry(3, "memory", ["Low memory"]),
		entry(4, "cpu", ["Low cpu"]),
		entry(5, "cpu", ["Low cpu"]),
		entry(6, "cpu", ["Low cpu"]),
	]
	d := deliberative.decision with input as lists(h)
	d.events == ["Raise disk above memory"]
	d.params.priorities == ["cpu", "disk", "memory"]

	# A tie: the higher-ranked moves.
	tie := array.concat([entry(1, "memory", ["Low memory"]), entry(2, "disk", ["Low disk"])], array.slice(h, 3, 6))
	d2 := deliberative.decision with input as lists(tie)
	d2.events == ["Raise memory above cpu"]
}

test_lists_full_metric_ranked_last_no_change if {
	h := [entry(1, "cpu", ["Low cpu"]), entry(2, "disk", ["Low disk"]), entry(3, "disk", ["Low disk"]), entry(4, "disk", ["Low disk"])]
	d := deliberative.decision with input as lists(h)
	d == no_change
}

test_lists_two_full_lists_no_less_changed if {
	h := [entry(sec, m, []) | some sec in numbers.range(1, 3); some m in ["cpu", "memory"]]
	d := deliberative.decision with input as lists(h)
	d == no_change
}

test_lists_after_last_change_and_holding if {
	h := [entry(1, "cpu", ["Low cpu"]), entry(2, "memory", ["Low memory"]), entry(3, "cpu", ["Low cpu"]), entry(4, "cpu", ["Low cpu"])]
	held := deliberative.decision with input as object.union(lists(h), {"state": {"last_change": "2026-11-21T10:09:30Z"}})
	held.events == ["Holding"]

	# Only the changes after the last rank change count: the lists start again.
	after := deliberative.decision with input as object.union(lists(h), {"state": {"last_change": "2026-11-21T10:00:02Z"}})
	after == {"actions": [], "events": ["No Event"], "state": {"last_change": "2026-11-21T10:00:02Z"}}
}

test_unknown_rule_is_starvation if {
	d := deliberative.decision with input as object.union(base, {"params": {"rule": "lists"}})
	d.events == ["Raise memory above cpu"]
	d2 := deliberative.decision with input as object.union(base, {"params": {"rule": "starvation"}})
	d2.events == ["Raise memory above cpu"]
}
