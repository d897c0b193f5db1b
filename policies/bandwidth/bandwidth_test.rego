package governor.bandwidth_test

import data.governor.bandwidth

base := {
	"loop": {"name": "factory-qos", "namespace": "factory", "kind": "Reactive", "state": "Running"},
	"time": "2026-11-21T10:00:00.250Z",
	"tick": 1204,
	"params": {"target_jitter_ms": 2.0, "targets": ["telemetry", "backup"]},
	"metrics": {"jitter": {"value": 1.5, "p50": 0.9, "p95": 1.5, "age_seconds": 0.2, "stale": false}},
	"targets": {
		"telemetry": {"kind": "Deployment", "name": "telemetry-upload", "bandwidth": {"egress": "500M"}},
		"backup": {"kind": "Deployment", "name": "backup", "bandwidth": {"egress": "200M"}},
	},
	"state": {},
	"history": [],
}

# The base input with this jitter value and this state.
at(jitter, state) := object.union(json.remove(base, ["state"]), {"metrics": {"jitter": {"value": jitter}}, "state": state})

egress(d) := {a.target: a.set.bandwidth.egress | some a in d.actions}

# ---------------------------------------------------------------------------
# Always an object with actions, events and state.

test_empty_input if {
	d := bandwidth.decision with input as {}
	d == {"actions": [], "events": ["Missing jitter"], "state": {}}
}

test_input_not_an_object if {
	d := bandwidth.decision with input as ["x"]
	d == {"actions": [], "events": ["Missing jitter"], "state": {}}
}

# ---------------------------------------------------------------------------
# Classification and EWMA.

test_first_tick_high_lowers_each_target if {
	d := bandwidth.decision with input as at(2.4, {})
	d.events == ["High jitter"]
	d.actions == [
		{
			"target": "telemetry", "metric": "jitter",
			"set": {"bandwidth": {"egress": "400M"}},
			"reason": "jitter ewma 2.4 ms above target 2.0 ms",
		},
		{
			"target": "backup", "metric": "jitter",
			"set": {"bandwidth": {"egress": "160M"}},
			"reason": "jitter ewma 2.4 ms above target 2.0 ms",
		},
	]
	d.state == {"ewma": 2.4, "last_change": "2026-11-21T10:00:00.250Z"}
}

test_ewma_smooths_with_previous_value if {
	# 0.7 * 2.4 + 0.3 * 1.0 = 1.98: below the target, hold.
	d := bandwidth.decision with input as at(2.4, {"ewma": 1.0})
	d == {"actions": [], "events": ["No Event"], "state": {"ewma": 1.98}}
}

test_ewma_alpha_param if {
	# 0.5 * 4 + 0.5 * 1 = 2.5
	d := bandwidth.decision with input as object.union(at(4, {"ewma": 1}), {"params": {"ewma_alpha": 0.5}})
	d.state.ewma == 2.5
	d.events == ["High jitter"]
}

test_equal_to_target_holds if {
	d := bandwidth.decision with input as at(2.0, {})
	d == {"actions": [], "events": ["No Event"], "state": {"ewma": 2.0}}
}

test_equal_to_low_bound_holds if {
	d := bandwidth.decision with input as at(1.0, {})
	d == {"actions": [], "events": ["No Event"], "state": {"ewma": 1.0}}
}

test_low_raises_each_target if {
	d := bandwidth.decision with input as at(0.4, {"ewma": 0.5})
	d.events == ["Low jitter"]
	d.actions == [
		{
			"target": "telemetry", "metric": "jitter",
			"set": {"bandwidth": {"egress": "510M"}},
			"reason": "jitter ewma 0.43 ms below target 2.0 ms",
		},
		{
			"target": "backup", "metric": "jitter",
			"set": {"bandwidth": {"egress": "210M"}},
			"reason": "jitter ewma 0.43 ms below target 2.0 ms",
		},
	]
	d.state == {"ewma": 0.43, "last_change": "2026-11-21T10:00:00.250Z"}
}

test_jitter_metric_name_param if {
	inp := object.union(json.remove(at(9, {}), ["metrics/jitter"]), {
		"params": {"jitter": "p95_jitter", "targets": ["telemetry"]},
		"metrics": {"p95_jitter": {"value": 3}},
	})
	d := bandwidth.decision with input as inp
	d.events == ["High p95_jitter"]
	d.actions == [{
		"target": "telemetry", "metric": "p95_jitter",
		"set": {"bandwidth": {"egress": "400M"}},
		"reason": "p95_jitter ewma 3.0 ms above target 2.0 ms",
	}]
}

test_params_decrease_factor_increase_step_low_ratio if {
	p := {"decrease_factor": 0.5, "increase_step": "25M", "low_ratio": 0.9, "target_jitter_ms": 1}
	dh := bandwidth.decision with input as object.union(at(5, {}), {"params": p})
	egress(dh) == {"telemetry": "250M", "backup": "100M"}
	dl := bandwidth.decision with input as object.union(at(0.85, {}), {"params": p})
	dl.events == ["Low jitter"]
	egress(dl) == {"telemetry": "525M", "backup": "225M"}
}

test_bad_params_fall_back_to_defaults if {
	p := {
		"jitter": 5, "target_jitter_ms": "2", "ewma_alpha": 1.5, "decrease_factor": 0,
		"cooldown_seconds": -1, "low_ratio": "half", "min": "tiny", "max": -3, "increase_step": [],
		"targets": ["telemetry"],
	}
	d := bandwidth.decision with input as object.union(at(3, {"ewma": 1}), {"params": p})

	# 0.7 * 3 + 0.3 * 1 = 2.4
	d.state.ewma == 2.4
	egress(d) == {"telemetry": "400M"}
}

test_targets_param_not_an_array if {
	d := bandwidth.decision with input as object.union(at(3, {}), {"params": {"targets": {"telemetry": true}}})
	d == {"actions": [], "events": ["High jitter"], "state": {"ewma": 3}}
}

test_no_targets_param if {
	d := bandwidth.decision with input as json.remove(at(3, {}), ["params/targets"])
	d == {"actions": [], "events": ["High jitter"], "state": {"ewma": 3}}
}

test_duplicate_targets_acted_on_once if {
	d := bandwidth.decision with input as object.union(at(3, {}), {"params": {"targets": ["backup", "telemetry", "backup"]}})
	[a.target | some a in d.actions] == ["backup", "telemetry"]
}

# ---------------------------------------------------------------------------
# Bounds and rounding.

test_high_never_below_min if {
	inp := object.union(at(3, {}), {"targets": {"telemetry": {"bandwidth": {"egress": "12M"}}, "backup": {"bandwidth": {"egress": "11M"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "10M", "backup": "10M"}
}

test_high_already_at_min_no_action if {
	inp := object.union(at(3, {"last_change": "2026-11-21T09:00:00Z"}), {"targets": {"telemetry": {"bandwidth": {"egress": "10M"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"backup": "160M"}
}

test_all_at_bound_keeps_last_change if {
	inp := object.union(at(3, {"last_change": "2026-11-21T09:00:00Z"}), {
		"params": {"min": "200M"},
		"targets": {"telemetry": {"bandwidth": {"egress": "200M"}}},
	})
	d := bandwidth.decision with input as inp
	d == {"actions": [], "events": ["High jitter"], "state": {"ewma": 3, "last_change": "2026-11-21T09:00:00Z"}}
}

test_low_never_above_max if {
	inp := object.union(at(0.1, {}), {"targets": {"telemetry": {"bandwidth": {"egress": "995M"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "1000M", "backup": "210M"}
}

test_low_already_at_max_no_action if {
	inp := object.union(at(0.1, {}), {"targets": {"telemetry": {"bandwidth": {"egress": "1G"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"backup": "210M"}
}

test_absent_egress_is_max if {
	inp := json.remove(at(3, {}), ["targets/telemetry/bandwidth", "targets/backup/bandwidth/egress"])
	dh := bandwidth.decision with input as inp
	egress(dh) == {"telemetry": "800M", "backup": "800M"}
	dl := bandwidth.decision with input as object.union(inp, {"metrics": {"jitter": {"value": 0.1}}})
	dl == {"actions": [], "events": ["Low jitter"], "state": {"ewma": 0.1}}
}

test_unparsable_egress_is_max if {
	inp := object.union(at(3, {}), {"targets": {"telemetry": {"bandwidth": {"egress": "fast"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "800M", "backup": "160M"}
}

test_rounds_down_to_whole_m if {
	inp := object.union(at(3, {}), {"targets": {"telemetry": {"bandwidth": {"egress": "333333333"}}, "backup": {"bandwidth": {"egress": "1.5G"}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "266M", "backup": "1000M"}
}

test_below_one_m_is_whole_bits if {
	p := {"min": "1000", "max": "1M", "increase_step": "1k"}
	inp := object.union(at(3, {}), {"params": p, "targets": {"telemetry": {"bandwidth": {"egress": "999999"}}, "backup": {"bandwidth": {"egress": 12345}}}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "799999", "backup": "9876"}
	dl := bandwidth.decision with input as object.union(inp, {"metrics": {"jitter": {"value": 0.1}}})
	egress(dl) == {"telemetry": "1M", "backup": "13345"}
}

test_bound_not_whole_m_is_whole_bits if {
	inp := object.union(at(3, {}), {"params": {"min": "170.5M"}})
	d := bandwidth.decision with input as inp
	egress(d) == {"telemetry": "400M", "backup": "170500000"}
}

# ---------------------------------------------------------------------------
# Cooldown.

test_cooldown_inside if {
	d := bandwidth.decision with input as at(3, {"last_change": "2026-11-21T09:59:30.251Z"})
	d == {
		"actions": [],
		"events": ["High jitter", "Cooldown"],
		"state": {"ewma": 3, "last_change": "2026-11-21T09:59:30.251Z"},
	}
}

test_cooldown_just_outside if {
	d := bandwidth.decision with input as at(3, {"last_change": "2026-11-21T09:59:30.250Z"})
	d.events == ["High jitter"]
	egress(d) == {"telemetry": "400M", "backup": "160M"}
	d.state == {"ewma": 3, "last_change": "2026-11-21T10:00:00.250Z"}
}

test_cooldown_seconds_param if {
	inp := object.union(at(3, {"last_change": "2026-11-21T09:59:00Z"}), {"params": {"cooldown_seconds": 120}})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter", "Cooldown"]
	d.actions == []
}

test_cooldown_reported_while_holding if {
	d := bandwidth.decision with input as at(1.5, {"last_change": "2026-11-21T09:59:59Z"})
	d == {"actions": [], "events": ["No Event", "Cooldown"], "state": {"ewma": 1.5, "last_change": "2026-11-21T09:59:59Z"}}
}

test_unparsable_last_change_is_ignored if {
	d := bandwidth.decision with input as at(3, {"last_change": "yesterday"})
	d.events == ["High jitter"]
	d.state.last_change == "2026-11-21T10:00:00.250Z"
}

test_no_valid_time_no_change if {
	d1 := bandwidth.decision with input as json.remove(at(3, {}), ["time"])
	d1 == {"actions": [], "events": ["High jitter", "Cooldown"], "state": {"ewma": 3}}
	d2 := bandwidth.decision with input as object.union(at(3, {}), {"time": "noon"})
	d2 == {"actions": [], "events": ["High jitter", "Cooldown"], "state": {"ewma": 3}}
}

test_time_with_offset if {
	inp := object.union(at(3, {"last_change": "2026-11-21T11:59:45+02:00"}), {"time": "2026-11-21T10:00:00Z"})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter", "Cooldown"]
}

# ---------------------------------------------------------------------------
# Missing, stale, unknown.

test_missing_jitter_passes_state_through if {
	state := {"ewma": 1.2, "last_change": "2026-11-21T09:00:00Z", "note": "kept"}
	d := bandwidth.decision with input as json.remove(at(3, state), ["metrics/jitter"])
	d == {"actions": [], "events": ["Missing jitter"], "state": state}
}

test_jitter_without_value_is_missing if {
	d := bandwidth.decision with input as json.remove(at(3, {"ewma": 1.2}), ["metrics/jitter/value"])
	d == {"actions": [], "events": ["Missing jitter"], "state": {"ewma": 1.2}}
}

test_stale_jitter_passes_state_through if {
	inp := object.union(at(30, {"ewma": 1.2}), {"metrics": {"jitter": {"stale": true}}})
	d := bandwidth.decision with input as inp
	d == {"actions": [], "events": ["Stale jitter"], "state": {"ewma": 1.2}}
}

test_unknown_targets_skipped if {
	inp := object.union(at(3, {}), {"params": {"targets": ["ghost", "telemetry", 7, "shadow"]}, "targets": {"shadow": "not an object"}})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter", "Unknown target ghost", "Unknown target 7", "Unknown target shadow"]
	egress(d) == {"telemetry": "400M"}
}

test_unknown_targets_reported_in_cooldown if {
	inp := object.union(at(3, {"last_change": "2026-11-21T10:00:00Z"}), {"params": {"targets": ["ghost"]}})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter", "Cooldown", "Unknown target ghost"]
}

test_other_state_keys_carried_over if {
	d := bandwidth.decision with input as at(3, {"ewma": 3, "mode": "auto"})
	d.state == {"ewma": 3, "mode": "auto", "last_change": "2026-11-21T10:00:00.250Z"}
}

test_state_not_an_object_is_empty if {
	d := bandwidth.decision with input as at(3, "corrupt")
	d.state == {"ewma": 3, "last_change": "2026-11-21T10:00:00.250Z"}
}

test_negative_ewma_reason if {
	# A nonsense negative jitter is still "below" and still formatted.
	inp := object.union(at(-0.25, {}), {"params": {"targets": ["backup"]}})
	d := bandwidth.decision with input as inp
	[a.reason | some a in d.actions] == ["jitter ewma -0.25 ms below target 2.0 ms"]
}

test_targets_not_an_object_are_unknown if {
	d := bandwidth.decision with input as object.union(at(3, {}), {"targets": "none"})
	d == {"actions": [], "events": ["High jitter", "Unknown target telemetry", "Unknown target backup"], "state": {"ewma": 3}}
}

test_reason_rounds_to_a_whole_number if {
	d := bandwidth.decision with input as object.union(at(2.9999, {}), {"params": {"targets": ["backup"]}})
	[a.reason | some a in d.actions] == ["jitter ewma 3.0 ms above target 2.0 ms"]
}

# ---------------------------------------------------------------------------
# The numbers the controller gives beside the strings (input.time_ns,
# egress_bps): the same decisions, without parsing.

numeric := object.union(at(3, {"ewma": 2.4, "last_change": "2026-11-21T09:59:00Z"}), {
	"time_ns": 1795255200250000000,
	"targets": {
		"telemetry": {"bandwidth": {"egress": "500M", "egress_bps": 500000000}},
		"backup": {"bandwidth": {"egress": "200M", "egress_bps": 200000000}},
	},
})

test_numbers_decide_as_strings if {
	d := bandwidth.decision with input as numeric
	s := bandwidth.decision with input as json.remove(numeric, ["time_ns", "targets/telemetry/bandwidth/egress_bps", "targets/backup/bandwidth/egress_bps"])
	d == s

	# 0.7 * 3 + 0.3 * 2.4 = 2.82
	d.state == {"ewma": 2.82, "last_change": "2026-11-21T10:00:00.250Z"}
	egress(d) == {"telemetry": "400M", "backup": "160M"}
}

test_time_ns_decides_the_cooldown if {
	# 29.999 s after the last change by input.time_ns, whatever input.time says.
	d := bandwidth.decision with input as object.union(numeric, {"time_ns": 1795255169999000000})
	d.events == ["High jitter", "Cooldown"]
}

test_numbers_with_factors_and_steps if {
	half := object.union(numeric, {"params": {"decrease_factor": 0.5}})
	d1 := bandwidth.decision with input as half
	egress(d1) == {"telemetry": "250M", "backup": "100M"}

	# Not a whole number of millionths: the arithmetic, rounded down to a whole M.
	third := object.union(numeric, {"params": {"decrease_factor": 0.3333333}})
	d2 := bandwidth.decision with input as third
	egress(d2) == {"telemetry": "166M", "backup": "66M"}

	low := object.union(numeric, {"metrics": {"jitter": {"value": 0.1}}, "state": {"ewma": 0.1}, "params": {"increase_step": "25M"}})
	d3 := bandwidth.decision with input as low
	egress(d3) == {"telemetry": "525M", "backup": "225M"}
}

test_numbers_at_and_below_the_bounds if {
	inp := object.union(numeric, {"targets": {
		"telemetry": {"bandwidth": {"egress_bps": 11000000}},
		"backup": {"bandwidth": {"egress_bps": 1000000}},
	}})
	d4 := bandwidth.decision with input as inp
	egress(d4) == {"telemetry": "10M", "backup": "10M"}
	bits := object.union(inp, {"params": {"min": 1000}})
	d5 := bandwidth.decision with input as bits
	egress(d5) == {"telemetry": "8M", "backup": "800000"}
}

test_ewma_rounds_to_six_decimals if {
	# 0.7 * 2.1234567 + 0.3 * 2 = 2.08641969, stored as 2.08642.
	d := bandwidth.decision with input as at(2.1234567, {"ewma": 2})
	d.state.ewma == 2.08642
	d.events == ["High jitter"]
	[a.reason | some a in d.actions] == ["jitter ewma 2.086 ms above target 2.0 ms", "jitter ewma 2.086 ms above target 2.0 ms"]

	# Below half a millionth: 0, not -0.
	z := bandwidth.decision with input as at(-0.0000001, {"ewma": 0})
	z.state.ewma == 0
	json.marshal(z.state.ewma) == "0"
}

test_reason_with_many_decimals if {
	d := bandwidth.decision with input as object.union(at(-0.2504, {}), {"params": {"targets": ["backup"]}})
	[a.reason | some a in d.actions] == ["jitter ewma -0.25 ms below target 2.0 ms"]
	big := bandwidth.decision with input as object.union(at(1e21, {}), {"params": {"targets": ["backup"]}})
	[a.reason | some a in big.actions] == ["jitter ewma 1000000000000000000000.0 ms above target 2.0 ms"]
	far := bandwidth.decision with input as object.union(at(2.3456, {}), {"params": {"targets": ["backup"]}})
	[a.reason | some a in far.actions] == ["jitter ewma 2.346 ms above target 2.0 ms"]
}

# ---------------------------------------------------------------------------
# jitter_field: the jitter read from another field of the metric (p95, the
# deterministic-networking controller's jitter).

test_jitter_field_p95 if {
	inp := object.union(at(1.5, {}), {
		"params": {"jitter_field": "p95"},
		"metrics": {"jitter": {"value": 1.5, "p95": 2.6}},
	})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter"]
	d.state.ewma == 2.6
	d.actions[0] == {
		"target": "telemetry", "metric": "jitter",
		"set": {"bandwidth": {"egress": "400M"}},
		"reason": "jitter p95 ewma 2.6 ms above target 2.0 ms",
	}
}

test_jitter_field_absent_is_missing if {
	inp := object.union(at(1.5, {"ewma": 1.2}), {"params": {"jitter_field": "p99"}})
	d := bandwidth.decision with input as inp
	d == {"actions": [], "events": ["Missing jitter"], "state": {"ewma": 1.2}}
}

test_jitter_field_not_a_string_is_value if {
	d := bandwidth.decision with input as object.union(at(2.4, {}), {"params": {"jitter_field": 95}})
	d.events == ["High jitter"]
	d.state.ewma == 2.4
}

# ---------------------------------------------------------------------------
# target_latency_ms: above it the egress goes down whatever the jitter.

latency(ms, jitter, state) := object.union(at(jitter, state), {
	"params": {"target_latency_ms": 10},
	"metrics": {"latency": {"value": ms, "stale": false}},
})

test_latency_above_target_lowers_when_jitter_holds if {
	d := bandwidth.decision with input as latency(12.5, 1.5, {})
	d.events == ["High latency"]
	d.actions == [
		{
			"target": "telemetry", "metric": "latency",
			"set": {"bandwidth": {"egress": "400M"}},
			"reason": "latency 12.5 ms above target 10.0 ms",
		},
		{
			"target": "backup", "metric": "latency",
			"set": {"bandwidth": {"egress": "160M"}},
			"reason": "latency 12.5 ms above target 10.0 ms",
		},
	]
	d.state == {"ewma": 1.5, "last_change": "2026-11-21T10:00:00.250Z"}
}

test_latency_above_target_lowers_when_jitter_is_low if {
	d := bandwidth.decision with input as latency(11, 0.4, {})
	d.events == ["Low jitter", "High latency"]
	egress(d) == {"telemetry": "400M", "backup": "160M"}
	[a.metric | some a in d.actions] == ["latency", "latency"]
}

test_latency_and_jitter_above_name_the_jitter if {
	d := bandwidth.decision with input as latency(11, 2.4, {})
	d.events == ["High jitter", "High latency"]
	[a.reason | some a in d.actions] == ["jitter ewma 2.4 ms above target 2.0 ms", "jitter ewma 2.4 ms above target 2.0 ms"]
	[a.metric | some a in d.actions] == ["jitter", "jitter"]
}

test_latency_within_target_decides_on_jitter if {
	d := bandwidth.decision with input as latency(10, 0.4, {})
	d.events == ["Low jitter"]
	egress(d) == {"telemetry": "510M", "backup": "210M"}
	h := bandwidth.decision with input as latency(9.9, 1.5, {})
	h == {"actions": [], "events": ["No Event"], "state": {"ewma": 1.5}}
}

test_latency_missing_or_stale_never_raises if {
	missing := json.remove(latency(5, 0.4, {}), ["metrics/latency"])
	dm := bandwidth.decision with input as missing
	dm == {"actions": [], "events": ["Low jitter", "Missing latency"], "state": {"ewma": 0.4}}

	stale := object.union(latency(5, 0.4, {}), {"metrics": {"latency": {"stale": true}}})
	ds := bandwidth.decision with input as stale
	ds == {"actions": [], "events": ["Low jitter", "Stale latency"], "state": {"ewma": 0.4}}

	# Holding jitter: the latency's event alone; a high jitter still lowers.
	dh := bandwidth.decision with input as json.remove(latency(5, 1.5, {}), ["metrics/latency"])
	dh == {"actions": [], "events": ["Missing latency"], "state": {"ewma": 1.5}}
	dl := bandwidth.decision with input as json.remove(latency(5, 2.4, {}), ["metrics/latency"])
	dl.events == ["High jitter", "Missing latency"]
	egress(dl) == {"telemetry": "400M", "backup": "160M"}
}

test_latency_metric_and_field_params if {
	# The Hubble collector's own latency: the jitter metric's p99.
	inp := object.union(at(1.5, {}), {
		"params": {"target_latency_ms": 10, "latency": "jitter", "latency_field": "p99"},
		"metrics": {"jitter": {"p99": 14}},
	})
	d := bandwidth.decision with input as inp
	d.events == ["High jitter p99"]
	[a.reason | some a in d.actions] == ["jitter p99 14.0 ms above target 10.0 ms", "jitter p99 14.0 ms above target 10.0 ms"]
}

test_latency_in_cooldown if {
	d := bandwidth.decision with input as latency(12, 1.5, {"last_change": "2026-11-21T10:00:00Z"})
	d == {"actions": [], "events": ["High latency", "Cooldown"], "state": {"ewma": 1.5, "last_change": "2026-11-21T10:00:00Z"}}
}

test_no_latency_target_ignores_latency if {
	inp := object.union(at(0.4, {}), {"metrics": {"latency": {"value": 50}}, "params": {"target_latency_ms": "10"}})
	d := bandwidth.decision with input as inp
	d.events == ["Low jitter"]
	egress(d) == {"telemetry": "510M", "backup": "210M"}
}
