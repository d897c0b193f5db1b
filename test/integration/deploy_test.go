//go:build integration

package integration

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/test/cluster"
)

// TestDeployWithKubectl applies the controller's kustomization and the
// samples to a real API server with kubectl, server-side and with strict
// field validation, and checks that invalid loops are refused with the
// CRD's own messages.
func TestDeployWithKubectl(t *testing.T) {
	api := cluster.StartAPIServer(t)
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := api.Kubectl(args...)
		require.NoError(t, err, out)
		return out
	}
	out := kubectl("apply", "--server-side", "--validate=strict", "-k", filepath.Join(repo, "config/default"))
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/controlloops.governor.dev serverside-applied",
		"namespace/governor-system serverside-applied",
		"serviceaccount/governor-controller-manager serverside-applied",
		"clusterrole.rbac.authorization.k8s.io/governor-manager-role serverside-applied",
		"role.rbac.authorization.k8s.io/governor-leader-election-role serverside-applied",
		"clusterrole.rbac.authorization.k8s.io/governor-metrics-reader serverside-applied",
		"service/governor-controller-manager-metrics serverside-applied",
		"deployment.apps/governor-controller-manager serverside-applied",
		"service/governor-push serverside-applied",
		"poddisruptionbudget.policy/governor-controller-manager serverside-applied",
		"validatingadmissionpolicy.admissionregistration.k8s.io/governor-controlloop-authors serverside-applied",
		"validatingadmissionpolicybinding.admissionregistration.k8s.io/governor-controlloop-authors serverside-applied",
		"flowschema.flowcontrol.apiserver.k8s.io/governor-leader-election serverside-applied",
	} {
		assert.Contains(t, out, want)
	}
	kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/controlloops.governor.dev")
	// The Lease's FlowSchema names a priority level the API server has.
	kubectl("wait", "--for=condition=Dangling=False", "--timeout=30s", "flowschema/governor-leader-election")
	// The binding names the policy by its prefixed name (kustomize's name reference).
	assert.Equal(t, "governor-controlloop-authors",
		kubectl("get", "validatingadmissionpolicybinding", "governor-controlloop-authors", "-o", "jsonpath={.spec.policyName}"))

	out = kubectl("apply", "--server-side", "--validate=strict", "-k", filepath.Join(repo, "config/samples"))
	assert.Contains(t, out, "controlloop.governor.dev/factory-qos serverside-applied")
	assert.Contains(t, out, "controlloop.governor.dev/factory-qos-p95 serverside-applied")
	assert.Contains(t, out, "controlloop.governor.dev/factory-scaling serverside-applied")
	assert.Contains(t, out, "controlloop.governor.dev/factory-priorities serverside-applied")

	// Defaults filled in by the API server, and the printer columns.
	assert.Equal(t, "Running", kubectl("get", "controlloop", "-n", "factory", "factory-scaling", "-o", "jsonpath={.spec.state}"))
	assert.Equal(t, "20", kubectl("get", "controlloop", "-n", "factory", "factory-scaling", "-o", "jsonpath={.spec.historyLimit}"))
	header := strings.SplitN(kubectl("get", "loops", "-n", "factory"), "\n", 2)[0]
	assert.Equal(t, []string{"NAME", "KIND", "STATE", "PHASE", "POLICY", "TICK", "LAST", "TICK", "LAST", "ACTION", "ACTED", "AGE"}, strings.Fields(header))
	// -o wide adds the replica that runs each loop (--shards=auto).
	wide := strings.SplitN(kubectl("get", "loops", "-n", "factory", "-o", "wide"), "\n", 2)[0]
	assert.Equal(t, "OWNER", strings.Fields(wide)[len(strings.Fields(wide))-1])

	// The manager's ClusterRole grants what the code's markers ask for.
	rules := kubectl("get", "clusterrole", "governor-manager-role", "-o", "jsonpath={.rules}")
	for _, want := range []string{`"controlloops/status"`, `"deployments/scale"`, `"horizontalpodautoscalers"`, `"pods"`} {
		assert.Contains(t, rules, want)
	}

	invalid := []struct{ name, spec, message string }{
		{"supervises-on-reactive", `kind: Reactive
  supervises: other`, "supervises is only for Deliberative loops"},
		{"deliberative-alone", `kind: Deliberative`, "a Deliberative loop must name the loop it supervises"},
		{"fast", `interval: 10ms`, "interval must be at least 100ms"},
		{"duplicate-targets", `targets:
    - {name: web, ref: {name: web}}
    - {name: web, ref: {name: api}}`, "Duplicate value"},
		{"replicas-min-above-max", `targets:
    - {name: web, ref: {name: web}, replicas: {min: 5, max: 2}}`, "min must not be above max"},
		{"bandwidth-min-above-max", `targets:
    - {name: web, ref: {name: web}, bandwidth: {min: 2G, max: 10M}}`, "min must not be above max"},
		{"integer-quantities", `targets:
    - {name: web, ref: {name: web}, resources: {cpu: {min: 4, max: 2}}}`, "min must not be above max"},
		{"hpa-and-replicas", `targets:
    - {name: web, ref: {name: web}, replicas: {min: 1, max: 2}, hpa: {min: 1, max: 3}}`, "declare hpa or replicas bounds, not both"},
		{"two-collector-kinds", `collectors:
    - {name: x, prometheus: {query: up}, push: {tokenSecret: s}}`, "set exactly one of hubble, prometheus, resources, push"},
		{"bad-state", `state: Sleeping`, `Unsupported value: "Sleeping"`},
		{"unknown-field", `colectors: []`, `unknown field "spec.colectors"`},
	}
	for _, tc := range invalid {
		manifest := `apiVersion: governor.dev/v1alpha1
kind: ControlLoop
metadata: {name: ` + tc.name + `, namespace: factory}
spec:
  policy: {bundle: reactive, decision: governor/reactive/decision}
  ` + tc.spec + "\n"
		out, err := api.KubectlApply(manifest)
		assert.Error(t, err, tc.name)
		assert.Contains(t, out, tc.message, tc.name)
	}
}
