#!/usr/bin/env bash
# Cost of each shipped policy in upstream `opa bench`, against a trivial
# policy reading the same input file in the same run: the figures of the
# README's "Policies in opa bench" and of policies/README.md.
#
#   hack/policy-bench.sh                 # all three bundles, 5 runs each
#   COUNT=9 hack/policy-bench.sh bandwidth
#   POLICIES=/path/to/other/policies hack/policy-bench.sh   # e.g. an older revision
#   BASELINE=/path/to/old/policies hack/policy-bench.sh     # and those, alternately
#
# For each example input of test/testdata/decisions/<policy>/ (one target),
# and for bandwidth also inputs with 1 and 1,000 targets in violation, it
# runs `opa bench` on the policy and on the trivial policy COUNT times,
# alternating, and prints the medians (ns/op as opa bench reports them: one
# evaluation of the prepared query on the parsed input, result included) and
# their ratio. Needs bin/opa (make bin/opa).
set -euo pipefail

cd "$(dirname "$0")/.."
OPA=${OPA:-bin/opa}
COUNT=${COUNT:-5}
POLICIES=${POLICIES:-policies}
BASELINE=${BASELINE:-}
[ -x "$OPA" ] || { echo "policy-bench: $OPA is missing: run make bin/opa" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The trivial policy: a valid decision that reads the input.
cat >"$work/trivial.rego" <<'REGO'
package governor.trivial

decision := {"actions": [], "events": ["No Event"], "state": object.get(input, "state", {})}
REGO

# Inputs for bandwidth with n targets, shaped as bundles/bench_test.go builds
# them (with the controller's numbers beside the strings): high jitter, every
# target at 500M, so each one is lowered.
bandwidth_input() {
	"$OPA" eval --format raw "json.marshal({
		\"loop\": {\"name\": \"bench\", \"namespace\": \"factory\", \"kind\": \"Reactive\", \"state\": \"Running\"},
		\"time\": \"2026-11-21T10:00:00.250Z\", \"time_ns\": 1795255200250000000, \"tick\": 1204,
		\"params\": {\"targets\": [sprintf(\"t%04d\", [i]) | some i in numbers.range(0, $1 - 1)]},
		\"metrics\": {\"jitter\": {\"value\": 3.1, \"age_seconds\": 0.2, \"stale\": false}},
		\"targets\": {sprintf(\"t%04d\", [i]): {\"kind\": \"Deployment\", \"namespace\": \"factory\", \"name\": sprintf(\"t%04d\", [i]),
			\"replicas\": 3, \"bandwidth\": {\"egress\": \"500M\", \"egress_bps\": 500000000}} | some i in numbers.range(0, $1 - 1)},
		\"state\": {\"ewma\": 2.8}, \"history\": []})" >"$work/bandwidth-targets-$1.input.json"
}

# ns/op of one opa bench run of a query.
bench() { # bundle input query
	"$OPA" bench --count 1 --format gobench -b "$1" -d "$work/trivial.rego" -i "$2" "$3" |
		awk '/^Benchmark/ {for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") print $i}'
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Runs the policy, the trivial one (and the baseline's policy) alternately;
# prints a table row and leaves the medians in $policy_ns and $baseline_ns.
measure() { # policy case input
	local p=() t=() b=()
	for _ in $(seq "$COUNT"); do
		t+=("$(bench "$POLICIES/$1" "$3" data.governor.trivial.decision)")
		p+=("$(bench "$POLICIES/$1" "$3" "data.governor.$1.decision")")
		[ -z "$BASELINE" ] || b+=("$(bench "$BASELINE/$1" "$3" "data.governor.$1.decision")")
	done
	local tm pm
	tm=$(printf '%s\n' "${t[@]}" | median)
	pm=$(printf '%s\n' "${p[@]}" | median)
	policy_ns=$pm
	if [ -z "$BASELINE" ]; then
		awk -v p="$1" -v c="$2" -v t="$tm" -v m="$pm" 'BEGIN {printf "| %s | %s | %.1f | %.1f | %.1f× |\n", p, c, m / 1000, t / 1000, m / t}'
	else
		baseline_ns=$(printf '%s\n' "${b[@]}" | median)
		awk -v p="$1" -v c="$2" -v t="$tm" -v m="$pm" -v b="$baseline_ns" 'BEGIN {printf "| %s | %s | %.1f | %.1f | %.1f× | %.1f | %.1f× | %.1f× |\n", p, c, m / 1000, t / 1000, m / t, b / 1000, b / t, b / m}'
	fi
}

policies=("$@")
[ ${#policies[@]} -gt 0 ] || policies=(reactive bandwidth deliberative)

echo "opa bench, medians of $COUNT runs; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [ -z "$BASELINE" ]; then
	echo "| policy | input | policy µs/op | trivial µs/op | ratio |"
	echo "|---|---|---:|---:|---:|"
else
	echo "| policy | input | policy µs/op | trivial µs/op | ratio | baseline µs/op | baseline ratio | speed-up |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
fi
for policy in "${policies[@]}"; do
	for input in test/testdata/decisions/"$policy"/*.input.json; do
		measure "$policy" "$(basename "$input" .input.json)" "$input"
	done
	if [ "$policy" = bandwidth ]; then
		bandwidth_input 1
		bandwidth_input 1000
		measure bandwidth "1 target" "$work/bandwidth-targets-1.input.json"
		one=$policy_ns
		one_baseline=${baseline_ns:-0}
		measure bandwidth "1,000 targets" "$work/bandwidth-targets-1000.input.json"
		awk -v a="$one" -v b="$policy_ns" 'BEGIN {printf "\nbandwidth, cost per target acted on: %.1f µs ((1,000 targets - 1 target) / 999)\n", (b - a) / 999 / 1000}'
		[ -z "$BASELINE" ] || awk -v a="$one_baseline" -v b="$baseline_ns" -v c="$one" -v d="$policy_ns" \
			'BEGIN {printf "baseline: %.1f µs per target; %.1f× as much\n", (b - a) / 999 / 1000, (b - a) / (d - c)}'
		echo
	fi
done
