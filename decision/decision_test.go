package decision_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/resources"
	. "governor.dev/governor/decision"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

var webAndDB = Contract{Targets: map[string]bool{"web": true, "db": true}, Fields: builtin.Actuators}

func TestValidateDecisionAcceptsEveryKindOfSet(t *testing.T) {
	d, problems := Validate(decode(t, `{
		"actions": [
			{"target": "web", "metric": "cpu", "reason": "cpu 91 above 80", "set": {"replicas": 4}},
			{"target": "db", "set": {"bandwidth": {"egress": "400M", "ingress": "1G"}}},
			{"target": "web", "set": {"resources": {"app": {"requests": {"cpu": "350m", "memory": "192Mi"}, "limits": {"memory": "256Mi"}}}}},
			{"target": "db", "set": {"hpa": {"minReplicas": 2, "maxReplicas": 8}, "replicas": 3.0}}
		],
		"events": ["High cpu"],
		"state": {"ewma": 1.7}
	}`), webAndDB)
	require.Empty(t, problems)
	require.Len(t, d.Actions, 4)
	assert.Equal(t, int64(4), d.Actions[0].Set["replicas"])
	assert.Equal(t, "cpu", d.Actions[0].Metric)
	bw := d.Actions[1].Set["bandwidth"].(bandwidth.Value)
	assert.Equal(t, int64(400_000_000), bw.Egress.Value())
	assert.Equal(t, int64(1_000_000_000), bw.Ingress.Value())
	app := d.Actions[2].Set["resources"].(resources.Containers)["app"]
	cpu, reqMem, limMem := app.Requests["cpu"], app.Requests["memory"], app.Limits["memory"]
	assert.Equal(t, int64(350), cpu.MilliValue())
	assert.Equal(t, int64(192<<20), reqMem.Value())
	assert.Equal(t, int64(256<<20), limMem.Value())
	h := d.Actions[3].Set["hpa"].(hpa.Bounds)
	assert.Equal(t, int64(2), *h.MinReplicas)
	assert.Equal(t, int64(8), *h.MaxReplicas)
	assert.Equal(t, int64(3), d.Actions[3].Set["replicas"], "an integral float is an integer")
	assert.Equal(t, []string{"High cpu"}, d.Events)
	assert.Equal(t, json.Number("1.7"), d.State["ewma"])
	assert.Nil(t, d.Params)
}

func TestValidateDecisionEmptyObjectIsNoAction(t *testing.T) {
	d, problems := Validate(map[string]any{}, webAndDB)
	require.Empty(t, problems)
	assert.Empty(t, d.Actions)
	assert.Nil(t, d.State, "no state returned: the previous state is kept")
}

func TestValidateDecisionRejects(t *testing.T) {
	cases := []struct {
		name     string
		decision string
		contract Contract
		field    string
		message  string
	}{
		{"not an object", `[1, 2]`, webAndDB, "", "decision must be an object, got array of 2"},
		{"string", `"allow"`, webAndDB, "", `got string "allow"`},
		{"null", `null`, webAndDB, "", "got null"},
		{"unknown top-level key", `{"action": []}`, webAndDB, "action", "unknown field"},
		{"actions not an array", `{"actions": {}}`, webAndDB, "actions", "must be an array, got object"},
		{"action not an object", `{"actions": ["web"]}`, webAndDB, "actions[0]", "must be an object"},
		{"unknown target", `{"actions": [{"target": "cache", "set": {"replicas": 1}}]}`, webAndDB, "actions[0].target", `"cache" is not one of the loop's targets [db, web]`},
		{"no targets at all", `{"actions": [{"target": "web", "set": {"replicas": 1}}]}`, Contract{Fields: builtin.Actuators}, "actions[0].target", "the input names no targets"},
		{"target not a string", `{"actions": [{"target": 7, "set": {"replicas": 1}}]}`, webAndDB, "actions[0].target", "must be a string, got number 7"},
		{"target missing", `{"actions": [{"set": {"replicas": 1}}]}`, webAndDB, "actions[0].target", "is required"},
		{"set missing", `{"actions": [{"target": "web"}]}`, webAndDB, "actions[0].set", "is required"},
		{"set empty", `{"actions": [{"target": "web", "set": {}}]}`, webAndDB, "actions[0].set", "must change something"},
		{"unknown set key", `{"actions": [{"target": "web", "set": {"replica": 2}}]}`, webAndDB, "actions[0].set.replica", "unknown field"},
		{"unknown action key", `{"actions": [{"target": "web", "set": {"replicas": 2}, "why": "x"}]}`, webAndDB, "actions[0].why", "unknown field"},
		{"replicas fraction", `{"actions": [{"target": "web", "set": {"replicas": 2.5}}]}`, webAndDB, "actions[0].set.replicas", "must be an integer, got 2.5"},
		{"replicas negative", `{"actions": [{"target": "web", "set": {"replicas": -1}}]}`, webAndDB, "actions[0].set.replicas", "must be at least 0"},
		{"replicas string", `{"actions": [{"target": "web", "set": {"replicas": "3"}}]}`, webAndDB, "actions[0].set.replicas", `must be an integer, got string "3"`},
		{"replicas huge", `{"actions": [{"target": "web", "set": {"replicas": 1e12}}]}`, webAndDB, "actions[0].set.replicas", "must be an integer"},
		{"bandwidth number", `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": 400}}}]}`, webAndDB, "actions[0].set.bandwidth.egress", "must be a Kubernetes quantity string"},
		{"bandwidth not a quantity", `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "fast"}}}]}`, webAndDB, "actions[0].set.bandwidth.egress", `"fast" is not a Kubernetes quantity`},
		{"bandwidth negative", `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "-5M"}}}]}`, webAndDB, "actions[0].set.bandwidth.egress", "must not be negative"},
		{"bandwidth unknown direction", `{"actions": [{"target": "web", "set": {"bandwidth": {"up": "5M"}}}]}`, webAndDB, "actions[0].set.bandwidth.up", "unknown field"},
		{"bandwidth empty", `{"actions": [{"target": "web", "set": {"bandwidth": {}}}]}`, webAndDB, "actions[0].set.bandwidth", "must set egress and/or ingress"},
		{"resources not per container", `{"actions": [{"target": "web", "set": {"resources": {"requests": {"cpu": "1"}}}}]}`, webAndDB, "actions[0].set.resources.requests.cpu", "unknown field"},
		{"resources bad quantity", `{"actions": [{"target": "web", "set": {"resources": {"app": {"limits": {"memory": "lots"}}}}}]}`, webAndDB, "actions[0].set.resources.app.limits.memory", "is not a Kubernetes quantity"},
		{"resources container not object", `{"actions": [{"target": "web", "set": {"resources": {"app": "1"}}}]}`, webAndDB, "actions[0].set.resources.app", "must be an object with requests and/or limits"},
		{"hpa zero min", `{"actions": [{"target": "web", "set": {"hpa": {"minReplicas": 0}}}]}`, webAndDB, "actions[0].set.hpa.minReplicas", "must be at least 1"},
		{"hpa min above max", `{"actions": [{"target": "web", "set": {"hpa": {"minReplicas": 5, "maxReplicas": 2}}}]}`, webAndDB, "actions[0].set.hpa", "minReplicas 5 is above maxReplicas 2"},
		{"metric not a string", `{"actions": [{"target": "web", "metric": 1, "set": {"replicas": 1}}]}`, webAndDB, "actions[0].metric", "must be a string"},
		{"events not an array", `{"events": "High cpu"}`, webAndDB, "events", "must be an array of strings"},
		{"event not a string", `{"events": ["ok", 3]}`, webAndDB, "events[1]", "must be a string, got number 3"},
		{"state not an object", `{"state": [1]}`, webAndDB, "state", "must be an object"},
		{"params not an object", `{"params": "x"}`, Contract{AllowParams: true}, "params", "must be an object"},
		{"params from a reactive loop", `{"params": {"priorities": ["memory"]}}`, Contract{AllowParams: false}, "params", "only a Deliberative loop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := Validate(decode(t, tc.decision), tc.contract)
			require.NotEmpty(t, problems)
			var found bool
			for _, p := range problems {
				if p.Field == tc.field && strings.Contains(p.Message, tc.message) {
					found = true
				}
			}
			assert.True(t, found, "want %s: %q among %v", tc.field, tc.message, problems)
		})
	}
}

func TestValidateDecisionReportsEveryProblem(t *testing.T) {
	_, problems := Validate(decode(t, `{
		"actions": [{"target": "nope", "set": {"replicas": -2}}, {"target": "web", "set": {"bandwidth": {"egress": 1}}}],
		"events": [1]
	}`), webAndDB)
	fields := make([]string, len(problems))
	for i, p := range problems {
		fields[i] = p.Field
	}
	assert.Equal(t, []string{"actions[0].target", "actions[0].set.replicas", "actions[1].set.bandwidth.egress", "events[0]"}, fields)
}

func TestContractFromInput(t *testing.T) {
	c := ContractFromInput(decode(t, `{"loop": {"kind": "Reactive"}, "targets": {"web": {}, "db": {}}}`).(map[string]any), builtin.Actuators)
	assert.Equal(t, map[string]bool{"web": true, "db": true}, c.Targets)
	assert.False(t, c.AllowParams)

	c = ContractFromInput(decode(t, `{"loop": {"kind": "Deliberative"}}`).(map[string]any), builtin.Actuators)
	assert.Empty(t, c.Targets)
	assert.True(t, c.AllowParams)

	c = ContractFromInput(map[string]any{}, builtin.Actuators)
	assert.True(t, c.AllowParams, "with no loop kind (governor eval on a bare input) params are allowed")
}

// Kubernetes' ParseQuantity takes seconds on "1e-10000000" and hours on "1e-2000000000", and
// arithmetic on "1e2000000000" as long: a policy must not stall the controller with a string.
func TestParseQuantityRefusesWhatWouldTakeForever(t *testing.T) {
	for s, why := range map[string]string{
		"1e-2000000000":         "out of range: a decimal exponent has at most 2 digits",
		"1E+100":                "out of range: a decimal exponent has at most 2 digits",
		"9223372036854775808":   "out of range: beyond ±(2^63-1)",
		"1e19":                  "out of range: beyond ±(2^63-1)",
		strings.Repeat("1", 65): "longer than 64 characters",
		"fast":                  "not a Kubernetes quantity",
	} {
		_, err := ParseQuantity(s)
		assert.EqualError(t, err, why, s)
	}
	for _, s := range []string{"400M", "1E", "8Ei", "1e18", "1e-99", "9223372036854775807", "128Mi", "0.5"} {
		_, err := ParseQuantity(s)
		assert.NoError(t, err, s)
	}
	_, problems := Validate(decode(t, `{"actions": [{"target": "web", "set": {"bandwidth": {"egress": "1e-2000000000"}}}]}`), webAndDB)
	assert.Equal(t, []Problem{{Field: "actions[0].set.bandwidth.egress", Message: `"1e-2000000000" is out of range: a decimal exponent has at most 2 digits`}}, problems)
}

// An empty requests or limits object changes nothing: refused, like an empty set (admitted,
// it would break FuzzValidate's round trip: encoded again, a container with neither).
func TestValidateRefusesAnEmptyResourceList(t *testing.T) {
	_, problems := Validate(decode(t, `{"actions": [{"target": "web", "set": {"resources": {"app": {"requests": {}}}}}]}`), webAndDB)
	assert.Equal(t, []Problem{{Field: "actions[0].set.resources.app.requests", Message: "must name at least one resource, such as cpu or memory"}}, problems)
}
