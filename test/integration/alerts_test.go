//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"governor.dev/governor/test/cluster"
)

// TestAlertRules checks the alerts with promtool (Debian's prometheus
// package): the rules file is valid, every alert's unit test (one per alert,
// config/prometheus/rules_test.yaml) passes, and the PrometheusRule of the
// kustomize component holds the same rules, word for word.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found on PATH: it comes with Debian's prometheus package (apt-get install -y prometheus, or make test-servers)")
	}
	dir := filepath.Join(repo, "config/prometheus")
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %v:\n%s", args, out)
	}

	read := func(name string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(raw, &doc))
		return doc
	}
	file, rule := read("rules.yaml"), read("prometheusrule.yaml")
	assert.Equal(t, "PrometheusRule", rule["kind"])
	assert.Equal(t, file, rule["spec"], "prometheusrule.yaml's spec must be rules.yaml")
	names := map[string]bool{}
	for _, g := range file["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			names[r.(map[string]any)["alert"].(string)] = true
		}
	}
	tests := read("rules_test.yaml")
	tested := map[string]bool{}
	for _, tc := range tests["tests"].([]any) {
		for _, a := range tc.(map[string]any)["alert_rule_test"].([]any) {
			if exp, _ := a.(map[string]any)["exp_alerts"].([]any); len(exp) > 0 {
				tested[a.(map[string]any)["alertname"].(string)] = true
			}
		}
	}
	assert.Equal(t, names, tested, "every alert has a test that makes it fire")
}

// TestDashboardConfigMap builds config/grafana with kubectl kustomize: one
// ConfigMap, labelled for Grafana's sidecar, holding the dashboard as it is.
func TestDashboardConfigMap(t *testing.T) {
	kubectl := filepath.Join(cluster.Assets(t), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(repo, "config/grafana")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var cm corev1.ConfigMap
	require.NoError(t, yaml.Unmarshal(out, &cm))
	assert.Equal(t, "ConfigMap", cm.Kind)
	assert.Equal(t, "1", cm.Labels["grafana_dashboard"])
	dashboard, err := os.ReadFile(filepath.Join(repo, "config/grafana/governor-loops.json"))
	require.NoError(t, err)
	assert.Equal(t, string(dashboard), cm.Data["governor-loops.json"])
}
