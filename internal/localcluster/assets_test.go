package localcluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAssetsMissing checks the message a test gets on a machine where
// `make envtest-assets` has not run.
func TestAssetsMissing(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(root, "go.mod"), []byte("module "+modulePath+"\n\ngo 1.26.0\n"), 0o644))
	sub := filepath.Join(root, "controller", "x")
	require.NoError(t, os.MkdirAll(sub, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "bin", "k8s"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin", "k8s", Etcd), []byte("#!/bin/sh\n"), 0o755))

	_, err := assetsFrom(sub)
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "run `make envtest-assets`")
	assert.Contains(t, msg, KubeAPIServer)
	assert.Contains(t, msg, Kwok)
	assert.NotContains(t, msg, Etcd+",", "etcd is present")
	assert.Contains(t, msg, filepath.Join(root, "bin", "k8s"))
}

// The core API names what is missing from an assets directory it is
// given, before starting anything.
func TestLaunchMissingAssets(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, Etcd), []byte("#!/bin/sh\n"), 0o755))
	logDir := filepath.Join(t.TempDir(), "logs")
	_, err := Launch(context.Background(), LaunchOptions{AssetsDir: dir, LogDir: logDir})
	var missing *MissingAssetsError
	require.ErrorAs(t, err, &missing)
	assert.Equal(t, dir, missing.Dir)
	assert.Contains(t, missing.Missing, KubeAPIServer)
	assert.Contains(t, missing.Missing, filepath.Join("stages", "pod-ready.yaml"))
	assert.NotContains(t, missing.Missing, Etcd)
	assert.Contains(t, err.Error(), "run `make envtest-assets`")
	assert.NoDirExists(t, logDir, "nothing started, nothing written")
	require.ErrorAs(t, CheckAssets(dir), &missing)
}
