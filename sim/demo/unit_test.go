package demo

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/config/crd"
)

func TestMissingAssets(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "report")
	_, err := Run(context.Background(), Options{AssetsDir: filepath.Join(dir, "bin", "k8s"), ReportDir: report, BundlesDir: "../../policies"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "run make envtest-assets")
	assert.Contains(t, err.Error(), "kube-apiserver")
	assert.NotContains(t, err.Error(), "\n")
	assert.NoDirExists(t, report, "nothing written")
}

func TestEmbeddedCRD(t *testing.T) {
	crds, err := crd.CustomResourceDefinitions()
	require.NoError(t, err)
	require.Len(t, crds, 1)
	assert.Equal(t, "controlloops.governor.dev", crds[0].Name)
	assert.Equal(t, "ControlLoop", crds[0].Spec.Names.Kind)
	onDisk, err := os.ReadFile("../../config/crd/bases/governor.dev_controlloops.yaml")
	require.NoError(t, err)
	embedded, err := crd.Bases.ReadFile("bases/governor.dev_controlloops.yaml")
	require.NoError(t, err)
	assert.Equal(t, onDisk, embedded)
}

func TestLoad(t *testing.T) {
	for s := 0; s < 600; s++ {
		cpu, mem := load(time.Duration(s) * time.Second)
		require.Greater(t, cpu, float64(cpuThreshold), "cpu stays in violation at %ds", s)
		require.Greater(t, mem, float64(memoryThreshold), "memory stays in violation at %ds", s)
		require.LessOrEqual(t, cpu, 100.0)
		require.LessOrEqual(t, mem, 100.0)
	}
	assert.Zero(t, backlogAt(30*time.Second), "too short for the backlog")
	assert.Equal(t, 30*time.Second, backlogAt(time.Minute))
	assert.Equal(t, 48*time.Second, backlogAt(2*time.Minute))
	assert.Equal(t, 40*time.Second, backlogAt(0))
}

func TestSummaries(t *testing.T) {
	for in, want := range map[string]string{
		`{"resources": {"app": {"requests": {"memory": "192Mi"}, "limits": {"memory": "576Mi"}}}}`: "app memory 192Mi/576Mi",
		`{"bandwidth": {"egress": "800M"}}`: "egress 800M",
		`{"replicas": 4}`:                   "replicas 4",
	} {
		var set map[string]any
		require.NoError(t, json.Unmarshal([]byte(in), &set))
		assert.Equal(t, want, setSummary(set))
	}
	assert.Equal(t, "0:05", fmtDuration(4600*time.Millisecond))
	assert.Equal(t, "2:00", fmtDuration(2*time.Minute))
}
