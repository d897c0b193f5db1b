package governor.reactive_test

import data.governor.reactive

params := {
	"monitor": {
		"cpu": {"kind": "superior", "threshold": 80},
		"memory": {"kind": "superior", "threshold": 85},
	},
	"priorities": ["cpu", "memory"],
	"remedies": {
		"cpu": {"target": "web", "scale": "replicas", "step": 1},
		"memory": {"target": "web", "scale": "memory", "container": "app", "step": "64Mi"},
	},
}

targets := {"web": {
	"kind": "Deployment", "namespace": "shop", "name": "web",
	"replicas": 3,
	"resources": {"app": {"requests": {"cpu": "250m", "memory": "128Mi"}}},
}}

base := {
	"loop": {"name": "web-scaling", "namespace": "shop", "kind": "Reactive", "state": "Running"},
	"time": "2026-11-21T10:00:00.250Z",
	"tick": 7,
	"params": params,
	"metrics": {
		"cpu": {"value": 50, "age_seconds": 0.5, "stale": false},
		"memory": {"value": 60, "age_seconds": 0.5, "stale": false},
	},
	"targets": targets,
	"state": {},
	"history": [],
}

# An input with cpu and memory at the given values and extra params merged in.
with_values(cpu, memory, extra) := object.union(
	object.union(base, {"metrics": {"cpu": {"value": cpu}, "memory": {"value": memory}}}),
	{"params": extra},
)

# ---------------------------------------------------------------------------
# Always an object with only actions and events.

test_empty_input if {
	d := reactive.decision with input as {}
	d == {"actions": [], "events": ["No Event"]}
}

test_input_not_an_object if {
	d := reactive.decision with input as "nonsense"
	d == {"actions": [], "events": ["No Event"]}
}

test_params_of_wrong_types if {
	inp := object.union(base, {"params": {"monitor": [1], "priorities": "cpu", "remedies": 3}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["No Event"]}
}

test_no_state_kept if {
	d := reactive.decision with input as with_values(95, 95, {})
	object.keys(d) == {"actions", "events"}
}

# ---------------------------------------------------------------------------
# Classification.

test_no_violation if {
	d := reactive.decision with input as base
	d.actions == []
	d.events == ["No Event"]
}

test_equal_to_threshold_is_no_violation if {
	d := reactive.decision with input as with_values(80, 85, {})
	d == {"actions": [], "events": ["No Event"]}
}

test_cpu_and_memory_high_remedies_cpu if {
	d := reactive.decision with input as with_values(91, 90, {})
	d.events == ["High cpu", "High memory"]
	d.actions == [{
		"target": "web", "metric": "cpu",
		"set": {"replicas": 4},
		"reason": "cpu 91 above threshold 80",
	}]
}

test_only_memory_high_raises_memory_request if {
	d := reactive.decision with input as with_values(50, 90.5, {})
	d.events == ["High memory"]
	d.actions == [{
		"target": "web", "metric": "memory",
		"set": {"resources": {"app": {"requests": {"memory": "192Mi"}}}},
		"reason": "memory 90.5 above threshold 85",
	}]
}

test_priorities_order_wins if {
	d := reactive.decision with input as with_values(91, 90, {"priorities": ["memory", "cpu"]})
	d.events == ["High memory", "High cpu"]
	[a.metric | some a in d.actions] == ["memory"]
}

test_duplicate_priorities_first_occurrence_counts if {
	d := reactive.decision with input as with_values(91, 90, {"priorities": ["memory", "cpu", "memory"]})
	d.events == ["High memory", "High cpu"]
	[a.metric | some a in d.actions] == ["memory"]
}

test_unlisted_metrics_rank_after_listed_by_name if {
	extra := {
		"monitor": {
			"zeta": {"kind": "superior", "threshold": 1},
			"alpha": {"kind": "superior", "threshold": 1},
		},
		"priorities": ["memory", "unmonitored", 7],
		"remedies": {"alpha": {"target": "web", "scale": "replicas"}},
	}
	inp := object.union(with_values(91, 90, extra), {"metrics": {"zeta": {"value": 2}, "alpha": {"value": 2}}})
	d := reactive.decision with input as inp
	d.events == ["High memory", "High alpha", "High cpu", "High zeta"]
	[a.metric | some a in d.actions] == ["memory"]
}

test_unlisted_only_ties_by_name if {
	extra := {
		"monitor": {
			"zeta": {"kind": "superior", "threshold": 1},
			"alpha": {"kind": "superior", "threshold": 1},
		},
		"remedies": {"alpha": {"target": "web", "scale": "replicas"}},
	}
	inp := object.union(with_values(10, 10, extra), {"metrics": {"zeta": {"value": 2}, "alpha": {"value": 2}}})
	d := reactive.decision with input as inp
	d.events == ["High alpha", "High zeta"]
	d.actions == [{
		"target": "web", "metric": "alpha",
		"set": {"replicas": 4},
		"reason": "alpha 2 above threshold 1",
	}]
}

test_inferior_kind_low if {
	extra := {
		"monitor": {"rps": {"kind": "inferior", "threshold": 10}},
		"remedies": {"rps": {"target": "web", "scale": "replicas", "step": 2}},
	}
	inp := object.union(with_values(10, 10, extra), {"metrics": {"rps": {"value": 4.5}}})
	d := reactive.decision with input as inp
	d.events == ["Low rps"]
	d.actions == [{
		"target": "web", "metric": "rps",
		"set": {"replicas": 1},
		"reason": "rps 4.5 below threshold 10",
	}]
}

test_inferior_kind_equal_and_above_no_violation if {
	extra := {"monitor": {"rps": {"kind": "inferior", "threshold": 10}}}
	d1 := reactive.decision with input as object.union(with_values(10, 10, extra), {"metrics": {"rps": {"value": 10}}})
	d1.events == ["No Event"]
	d2 := reactive.decision with input as object.union(with_values(10, 10, extra), {"metrics": {"rps": {"value": 99}}})
	d2.events == ["No Event"]
}

test_superior_below_threshold_no_violation if {
	d := reactive.decision with input as with_values(0, 0, {})
	d.events == ["No Event"]
}

test_unknown_kind_or_bad_threshold_no_violation if {
	extra := {"monitor": {
		"cpu": {"kind": "sideways", "threshold": 1},
		"memory": {"kind": "superior", "threshold": "85"},
		"disk": "not an object",
	}}
	d := reactive.decision with input as with_values(99, 99, extra)
	d == {"actions": [], "events": ["No Event"]}
}

test_replicas_never_below_zero if {
	extra := {
		"monitor": {"rps": {"kind": "inferior", "threshold": 10}},
		"remedies": {"rps": {"target": "web", "scale": "replicas", "step": 2}},
	}
	inp := object.union(with_values(10, 10, extra), {"metrics": {"rps": {"value": 1}}, "targets": {"web": {"replicas": 1}}})
	d := reactive.decision with input as inp
	[a.set | some a in d.actions] == [{"replicas": 0}]
}

test_replicas_default_step_is_one if {
	inp := json.remove(with_values(91, 10, {}), ["params/remedies/cpu/step"])
	d := reactive.decision with input as inp
	[a.set | some a in d.actions] == [{"replicas": 4}]
}

# ---------------------------------------------------------------------------
# Missing and stale metrics.

test_missing_metric_event_only if {
	inp := json.remove(base, ["metrics/cpu"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["Missing cpu"]}
}

test_metric_without_value_is_missing if {
	inp := json.remove(base, ["metrics/cpu/value"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["Missing cpu"]}
}

test_stale_metric_is_never_a_violation if {
	inp := object.union(with_values(99, 10, {}), {"metrics": {"cpu": {"stale": true}}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["Stale cpu"]}
}

test_stale_metric_without_value if {
	inp := object.union(json.remove(base, ["metrics/memory/value"]), {"metrics": {"memory": {"stale": true}}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["Stale memory"]}
}

test_no_metrics_at_all if {
	inp := json.remove(base, ["metrics"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["Missing cpu", "Missing memory"]}
}

test_violation_with_missing_metric if {
	inp := json.remove(with_values(10, 90, {}), ["metrics/cpu"])
	d := reactive.decision with input as inp
	d.events == ["High memory", "Missing cpu"]
	[a.metric | some a in d.actions] == ["memory"]
}

# ---------------------------------------------------------------------------
# No remedy.

test_no_remedy_for_first_violation_does_not_fall_through if {
	inp := json.remove(with_values(91, 90, {}), ["params/remedies/cpu"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "High memory", "No remedy for cpu"]}
}

test_no_remedy_when_remedies_absent if {
	inp := json.remove(with_values(91, 10, {}), ["params/remedies"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_when_target_unknown if {
	inp := with_values(91, 10, {"remedies": {"cpu": {"target": "db"}}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_when_target_not_a_string if {
	inp := with_values(91, 10, {"remedies": {"cpu": {"target": 3}}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_when_target_lacks_replicas if {
	inp := json.remove(with_values(91, 10, {}), ["targets/web/replicas"])
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_when_target_not_an_object if {
	inp := object.union(with_values(91, 10, {}), {"targets": {"web": "web"}})
	d := reactive.decision with input as inp
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_for_bad_replica_step if {
	d1 := reactive.decision with input as with_values(91, 10, {"remedies": {"cpu": {"step": 1.5}}})
	d1 == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
	d2 := reactive.decision with input as with_values(91, 10, {"remedies": {"cpu": {"step": 0}}})
	d2 == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
	d3 := reactive.decision with input as with_values(91, 10, {"remedies": {"cpu": {"step": "1"}}})
	d3 == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_for_negative_or_fractional_replicas if {
	d1 := reactive.decision with input as object.union(with_values(91, 10, {}), {"targets": {"web": {"replicas": -1}}})
	d1 == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
	d2 := reactive.decision with input as object.union(with_values(91, 10, {}), {"targets": {"web": {"replicas": 2.5}}})
	d2 == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_for_unknown_scale if {
	d := reactive.decision with input as with_values(91, 10, {"remedies": {"cpu": {"scale": "nodes"}}})
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
}

test_no_remedy_for_bad_resource_step if {
	d1 := reactive.decision with input as with_values(10, 90, {"remedies": {"memory": {"step": "lots"}}})
	d1 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
	d2 := reactive.decision with input as with_values(10, 90, {"remedies": {"memory": {"step": "0"}}})
	d2 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
	d3 := reactive.decision with input as with_values(10, 90, {"remedies": {"memory": {"step": -5}}})
	d3 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
	d4 := reactive.decision with input as json.remove(with_values(10, 90, {}), ["params/remedies/memory/step"])
	d4 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
}

test_no_remedy_without_container if {
	d1 := reactive.decision with input as json.remove(with_values(10, 90, {}), ["params/remedies/memory/container"])
	d1 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
	d2 := reactive.decision with input as with_values(10, 90, {"remedies": {"memory": {"container": ["app"]}}})
	d2 == {"actions": [], "events": ["High memory", "No remedy for memory"]}
}

# ---------------------------------------------------------------------------
# Resources.

resources_input(resources, extra, cpu, memory) := object.union(
	json.remove(with_values(cpu, memory, extra), ["targets/web/resources"]),
	{"targets": {"web": {"resources": resources}}},
)

sets(d) := [a.set | some a in d.actions]

test_memory_requests_and_limits_both_move if {
	res := {"app": {"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi"}}}
	d := reactive.decision with input as resources_input(res, {}, 10, 90)
	sets(d) == [{"resources": {"app": {
		"requests": {"memory": "192Mi"},
		"limits": {"memory": "320Mi"},
	}}}]
}

test_memory_only_limits_moves if {
	res := {"app": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}
	d := reactive.decision with input as resources_input(res, {}, 10, 90)
	sets(d) == [{"resources": {"app": {"limits": {"memory": "1088Mi"}}}}]
}

test_memory_not_whole_mi_is_plain_bytes if {
	res := {"app": {"requests": {"memory": "100M"}}}
	d := reactive.decision with input as resources_input(res, {}, 10, 90)
	sets(d) == [{"resources": {"app": {"requests": {"memory": "167108864"}}}}]
}

test_memory_numeric_step_and_current if {
	res := {"app": {"requests": {"memory": 134217728}}}
	d := reactive.decision with input as resources_input(res, {"remedies": {"memory": {"step": 67108864}}}, 10, 90)
	sets(d) == [{"resources": {"app": {"requests": {"memory": "192Mi"}}}}]
}

test_memory_absent_sets_request_to_step if {
	res := {"app": {"requests": {"cpu": "250m"}}}
	d := reactive.decision with input as resources_input(res, {}, 10, 90)
	sets(d) == [{"resources": {"app": {"requests": {"memory": "64Mi"}}}}]
}

test_container_absent_sets_request_to_step if {
	inp := json.remove(with_values(10, 90, {}), ["targets/web/resources"])
	d := reactive.decision with input as inp
	sets(d) == [{"resources": {"app": {"requests": {"memory": "64Mi"}}}}]
}

test_unparsable_current_is_treated_as_absent if {
	res := {"app": {"requests": {"memory": "a lot"}}}
	d := reactive.decision with input as resources_input(res, {}, 10, 90)
	sets(d) == [{"resources": {"app": {"requests": {"memory": "64Mi"}}}}]
}

low_memory := {
	"monitor": {"memory": {"kind": "inferior", "threshold": 20}},
	"remedies": {"memory": {"step": "64Mi"}},
}

test_memory_low_moves_down if {
	res := {"app": {"requests": {"memory": "192Mi"}, "limits": {"memory": "100Mi"}}}
	d := reactive.decision with input as resources_input(res, low_memory, 10, 5)
	d.events == ["Low memory"]
	d.actions == [{
		"target": "web", "metric": "memory",
		"set": {"resources": {"app": {"requests": {"memory": "128Mi"}, "limits": {"memory": "64Mi"}}}},
		"reason": "memory 5 below threshold 20",
	}]
}

test_memory_low_never_below_one_step if {
	res := {"app": {"requests": {"memory": "64Mi"}, "limits": {"memory": "32Mi"}}}
	d := reactive.decision with input as resources_input(res, low_memory, 10, 5)
	sets(d) == [{"resources": {"app": {"requests": {"memory": "64Mi"}, "limits": {"memory": "32Mi"}}}}]
}

cpu_resources := {"remedies": {"cpu": {"target": "web", "scale": "cpu", "container": "app", "step": "100m"}}}

test_cpu_requests_and_limits_in_millicores if {
	res := {"app": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}}
	d := reactive.decision with input as resources_input(res, cpu_resources, 91, 10)
	d.actions == [{
		"target": "web", "metric": "cpu",
		"set": {"resources": {"app": {"requests": {"cpu": "350m"}, "limits": {"cpu": "1100m"}}}},
		"reason": "cpu 91 above threshold 80",
	}]
}

test_cpu_numeric_and_fractional_quantities if {
	res := {"app": {"requests": {"cpu": 0.5}, "limits": {"cpu": "1.5"}}}
	extra := object.union(cpu_resources, {"remedies": {"cpu": {"step": 0.25}}})
	d := reactive.decision with input as resources_input(res, extra, 91, 10)
	sets(d) == [{"resources": {"app": {"requests": {"cpu": "750m"}, "limits": {"cpu": "1750m"}}}}]
}

test_cpu_absent_sets_request_to_step if {
	res := {"app": {"requests": {"memory": "128Mi"}}}
	d := reactive.decision with input as resources_input(res, cpu_resources, 91, 10)
	sets(d) == [{"resources": {"app": {"requests": {"cpu": "100m"}}}}]
}

test_cpu_low_moves_down if {
	extra := object.union(cpu_resources, {"monitor": {"cpu": {"kind": "inferior", "threshold": 20}}})
	res := {"app": {"requests": {"cpu": "250m"}, "limits": {"cpu": "150m"}}}
	d := reactive.decision with input as resources_input(res, extra, 5, 10)
	d.events == ["Low cpu"]
	sets(d) == [{"resources": {"app": {"requests": {"cpu": "150m"}, "limits": {"cpu": "100m"}}}}]
}

test_priorities_not_an_array_rank_by_name if {
	d := reactive.decision with input as with_values(91, 90, {"priorities": "memory"})
	d.events == ["High cpu", "High memory"]
	[a.metric | some a in d.actions] == ["cpu"]
}

# The numbers the controller gives beside the quantities (cpu_millis,
# memory_bytes) are what the remedy moves; the strings are not parsed.
test_numbers_beside_quantities if {
	res := {"app": {
		"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1"},
		"cpu_millis": {"requests": 250, "limits": 1000}, "memory_bytes": {"requests": 134217728},
	}}
	dc := reactive.decision with input as resources_input(res, cpu_resources, 91, 10)
	sets(dc) == [{"resources": {"app": {"requests": {"cpu": "350m"}, "limits": {"cpu": "1100m"}}}}]

	# A number wins over its string (the controller gives both, the same).
	odd := json.patch(res, [{"op": "add", "path": "/app/memory_bytes/requests", "value": 67108864}])
	dm := reactive.decision with input as resources_input(odd, {}, 10, 95)
	sets(dm) == [{"resources": {"app": {"requests": {"memory": "128Mi"}}}}]
}

# ---------------------------------------------------------------------------
# Direction per status (params.remedies.<m>.direction).

# The Orange/WUT closed-loop demo: both thresholds inferior, Low is a
# shortage, remedied upwards; cpu ranks first.
orange_params := {
	"monitor": {
		"cpu": {"kind": "inferior", "threshold": 5},
		"memory": {"kind": "inferior", "threshold": 50},
	},
	"priorities": ["cpu", "memory"],
	"remedies": {
		"cpu": {"target": "web", "scale": "cpu", "container": "app", "step": "100m", "direction": {"Low": "up", "High": "down"}},
		"memory": {"target": "web", "scale": "memory", "container": "app", "step": "64Mi", "direction": {"Low": "up", "High": "down"}},
	},
}

orange(cpu, memory) := object.union(base, {
	"params": orange_params,
	"metrics": {"cpu": {"value": cpu, "new": true}, "memory": {"value": memory, "new": true}},
})

test_orange_low_cpu_and_memory_remedies_cpu_up if {
	d := reactive.decision with input as orange(2, 40)
	d == {
		"actions": [{"target": "web", "metric": "cpu", "set": {"resources": {"app": {"requests": {"cpu": "350m"}}}}, "reason": "cpu 2 below threshold 5"}],
		"events": ["Low cpu", "Low memory"],
	}
}

test_orange_low_memory_remedies_memory_up if {
	d := reactive.decision with input as orange(5, 28)
	d == {
		"actions": [{"target": "web", "metric": "memory", "set": {"resources": {"app": {"requests": {"memory": "192Mi"}}}}, "reason": "memory 28 below threshold 50"}],
		"events": ["Low memory"],
	}
}

test_direction_down_for_high if {
	inp := object.union(orange(50, 60), {"params": {"monitor": {"cpu": {"kind": "superior", "threshold": 40}}}})
	d := reactive.decision with input as inp
	d.actions[0].set == {"resources": {"app": {"requests": {"cpu": "150m"}}}}
}

test_direction_replicas if {
	extra := {
		"monitor": {"rps": {"kind": "inferior", "threshold": 10}},
		"remedies": {"rps": {"target": "web", "scale": "replicas", "direction": {"Low": "up"}}},
	}
	d := reactive.decision with input as object.union(with_values(50, 60, extra), {"metrics": {"rps": {"value": 3}}})
	d.actions[0].set == {"replicas": 4}
	d.actions[0].reason == "rps 3 below threshold 10"

	# High keeps its default, up.
	high := object.union(extra, {"remedies": {"cpu": {"direction": {"Low": "up"}}}})
	d2 := reactive.decision with input as with_values(91, 60, high)
	d2.actions[0].set == {"replicas": 4}
}

test_direction_absent_for_a_status_is_the_default if {
	d := reactive.decision with input as with_values(50, 90, {"remedies": {"memory": {"direction": {"Low": "up"}}}})
	d.actions[0].set == {"resources": {"app": {"requests": {"memory": "192Mi"}}}}
	d2 := reactive.decision with input as with_values(50, 90, {"remedies": {"memory": {"direction": "sideways"}}})
	d2.actions[0].set == {"resources": {"app": {"requests": {"memory": "192Mi"}}}}
}

test_unknown_direction_is_no_remedy if {
	d := reactive.decision with input as with_values(91, 60, {"remedies": {"cpu": {"direction": {"High": "sideways"}}}})
	d == {"actions": [], "events": ["High cpu", "No remedy for cpu"]}
	d2 := reactive.decision with input as with_values(50, 90, {"remedies": {"memory": {"direction": {"High": 1}}}})
	d2 == {"actions": [], "events": ["High memory", "No remedy for memory"]}

	# A resource the container does not have yet, set to the step: only in a known direction.
	t := {"web": {"replicas": 3, "resources": {"app": {}}}}
	d3 := reactive.decision with input as object.union(with_values(50, 90, {"remedies": {"memory": {"direction": {"High": "no"}}}}), {"targets": t})
	d3.events == ["High memory", "No remedy for memory"]
}

# ---------------------------------------------------------------------------
# act_on: new.

test_act_on_new_acts_on_a_new_observation if {
	inp := object.union(orange(2, 40), {"params": {"act_on": "new"}})
	d := reactive.decision with input as inp
	d.events == ["Low cpu", "Low memory"]
	d.actions[0].metric == "cpu"
}

test_act_on_new_ignores_values_already_seen if {
	seen := object.union(orange(2, 40), {"params": {"act_on": "new"}, "metrics": {"cpu": {"new": false}, "memory": {"new": false}}})
	d := reactive.decision with input as seen
	d == {"actions": [], "events": ["No Event"]}

	# Only memory is new: only memory is classified and remedied.
	memory := object.union(seen, {"metrics": {"memory": {"new": true}}})
	d2 := reactive.decision with input as memory
	d2.events == ["Low memory"]
	d2.actions[0].metric == "memory"

	# Without new (an input written by hand): not new.
	d3 := reactive.decision with input as json.remove(object.union(orange(2, 40), {"params": {"act_on": "new"}}), ["metrics/cpu/new", "metrics/memory/new"])
	d3 == {"actions": [], "events": ["No Event"]}
}

test_act_on_new_still_reports_missing_and_stale if {
	inp := object.union(orange(2, 40), {"params": {"act_on": "new"}, "metrics": {"cpu": {"new": false, "stale": true}}})
	d := reactive.decision with input as json.remove(inp, ["metrics/memory"])
	d == {"actions": [], "events": ["Stale cpu", "Missing memory"]}
}

test_act_on_default_acts_on_every_tick if {
	seen := object.union(orange(2, 40), {"metrics": {"cpu": {"new": false}, "memory": {"new": false}}})
	d := reactive.decision with input as seen
	d.events == ["Low cpu", "Low memory"]
	d2 := reactive.decision with input as object.union(seen, {"params": {"act_on": "any"}})
	d2.events == ["Low cpu", "Low memory"]
}
