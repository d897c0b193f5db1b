//go:build integration

package integration

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"

	"governor.dev/governor/test/cluster"
)

// TestBoundsValidation: the API server refuses every target bounds the guard could not keep
// (issue 12), each with the CRD's own message, and accepts the edge cases that are fine.
func TestBoundsValidation(t *testing.T) {
	api := cluster.StartAPIServer(t, filepath.Join(repo, "config/crd/bases"))
	apply := func(name, targets string) (string, error) {
		return api.KubectlApply(`apiVersion: governor.dev/v1alpha1
kind: ControlLoop
metadata: {name: ` + name + `, namespace: default}
spec:
  policy: {bundle: reactive, decision: governor/reactive/decision}
  targets:
  - ` + targets + "\n")
	}

	invalid := []struct{ name, target, message string }{
		{"bandwidth-negative-step", `{name: t, ref: {name: t}, bandwidth: {min: 100M, max: 1000M, maxStep: "-50M"}}`,
			"maxStep must be a quantity above 0 (leave it out for no limit)"},
		{"bandwidth-zero-step", `{name: t, ref: {name: t}, bandwidth: {min: 100M, max: 1000M, maxStep: "0"}}`,
			"maxStep must be a quantity above 0"},
		{"bandwidth-negative-min", `{name: t, ref: {name: t}, bandwidth: {min: "-1M", max: 1000M}}`,
			"min must be a quantity of at least 0"},
		{"bandwidth-min-above-max", `{name: t, ref: {name: t}, bandwidth: {min: 2G, max: 10M}}`,
			"min must not be above max"},
		{"bandwidth-huge-exponent", `{name: t, ref: {name: t}, bandwidth: {min: "1e-2000000000", max: 1000M}}`,
			"min must be a quantity of at least 0, such as 100M or 64Mi (a decimal exponent has at most 2 digits)"},
		{"cpu-negative-max", `{name: t, ref: {name: t}, resources: {cpu: {min: "-2", max: "-1"}}}`,
			"max must be a quantity of at least 0"},
		{"memory-negative-step", `{name: t, ref: {name: t}, resources: {memory: {min: 64Mi, max: 1Gi, maxStep: "-128Mi"}}}`,
			"maxStep must be a quantity above 0"},
		{"memory-min-above-max", `{name: t, ref: {name: t}, resources: {memory: {min: 2Gi, max: 1Gi}}}`,
			"min must not be above max"},
		{"memory-not-a-quantity", `{name: t, ref: {name: t}, resources: {memory: {min: 1e1.5, max: 1Gi}}}`,
			"min must be a quantity of at least 0"},
		{"replicas-negative-step", `{name: t, ref: {name: t}, replicas: {min: 1, max: 10, maxStep: -2}}`,
			"maxStep in body should be greater than or equal to 0"},
		{"replicas-negative-min", `{name: t, ref: {name: t}, replicas: {min: -1, max: 10}}`,
			"min in body should be greater than or equal to 0"},
		{"replicas-min-above-max", `{name: t, ref: {name: t}, replicas: {min: 5, max: 2}}`,
			"min must not be above max"},
		{"hpa-zero-min", `{name: t, ref: {name: t}, hpa: {min: 0, max: 3}}`,
			"min in body should be greater than or equal to 1"},
		{"hpa-min-above-max", `{name: t, ref: {name: t}, hpa: {min: 4, max: 3}}`,
			"min must not be above max"},
		{"out-of-bounds-mode", `{name: t, ref: {name: t}, replicas: {min: 1, max: 2}, outOfBounds: Jump}`,
			`Unsupported value: "Jump"`},
		{"external-without-settings", `{name: t, ref: {kind: External, name: t}}`,
			"a target of kind External declares external (its url, signing Secret and settings), and only it does"},
		{"external-on-a-deployment", `{name: t, ref: {name: t}, external: {url: "https://x.example", signingSecret: k, settings: [{name: rate, min: 0, max: 1}]}}`,
			"a target of kind External declares external"},
		{"external-with-replicas", `{name: t, ref: {kind: External, name: t}, replicas: {min: 1, max: 2}, external: {url: "https://x.example", signingSecret: k, settings: [{name: rate, min: 0, max: 1}]}}`,
			"an External target has settings only: no replicas, bandwidth, resources or hpa bounds"},
		{"external-plain-http", `{name: t, ref: {kind: External, name: t}, external: {url: "http://x.example", signingSecret: k, settings: [{name: rate, min: 0, max: 1}]}}`,
			"url must be an https URL with a host"},
		{"external-negative-step", `{name: t, ref: {kind: External, name: t}, external: {url: "https://x.example", signingSecret: k, settings: [{name: rate, min: 0, max: 1, maxStep: "-0.1"}]}}`,
			"maxStep must be a quantity above 0"},
		{"external-min-above-max", `{name: t, ref: {kind: External, name: t}, external: {url: "https://x.example", signingSecret: k, settings: [{name: rate, min: 2, max: 1}]}}`,
			"min must not be above max"},
		{"external-no-settings", `{name: t, ref: {kind: External, name: t}, external: {url: "https://x.example", signingSecret: k, settings: []}}`,
			"should have at least 1 items"},
		{"external-timeout", `{name: t, ref: {kind: External, name: t}, external: {url: "https://x.example", signingSecret: k, timeout: 1m, settings: [{name: rate, min: 0, max: 1}]}}`,
			"timeout must be above 0 and at most 30s"},
	}
	for _, tc := range invalid {
		out, err := apply(tc.name, tc.target)
		assert.Error(t, err, tc.name)
		assert.Contains(t, out, tc.message, tc.name)
	}

	out, err := api.KubectlApply(`apiVersion: governor.dev/v1alpha1
kind: ControlLoop
metadata: {name: negative-cooldown, namespace: default}
spec:
  policy: {bundle: reactive, decision: governor/reactive/decision}
  safety: {cooldown: -30s}
`)
	assert.Error(t, err)
	assert.Contains(t, out, "cooldown must not be negative")

	valid := []struct{ name, target string }{
		{"equal-bounds", `{name: t, ref: {name: t}, bandwidth: {min: 500M, max: 500M, maxStep: 1}, outOfBounds: Snap}`},
		{"integer-quantities", `{name: t, ref: {name: t}, resources: {cpu: {min: 0, max: 4, maxStep: 1}}}`},
		{"exa-and-exponents", `{name: t, ref: {name: t}, bandwidth: {min: "1e-9", max: 1E, maxStep: "1e18"}}`},
		{"replicas-no-step", `{name: t, ref: {name: t}, replicas: {min: 0, max: 0, maxStep: 0}, outOfBounds: Step}`},
		{"external", `{name: t, ref: {kind: External, name: lupus}, external: {url: "https://lupus.example:8443/settings", signingSecret: k, settings: [{name: rate, min: 10, max: 100, maxStep: 20}, {name: ratio, min: "0", max: "0.5"}]}}`},
	}
	for _, tc := range valid {
		out, err := apply(tc.name, tc.target)
		assert.NoError(t, err, "%s: %s", tc.name, out)
	}
	mode, err := api.Kubectl("get", "controlloop", "integer-quantities", "-o", "jsonpath={.spec.targets[0].outOfBounds}")
	assert.NoError(t, err, mode)
	assert.Equal(t, "Step", mode, "the default")
}
