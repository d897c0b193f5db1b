package bundles

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildUsesTheManifestRevisionUnlessOverridden(t *testing.T) {
	ctx := context.Background()
	dir := labelled(t, "r7")
	out := filepath.Join(t.TempDir(), "policy.tar.gz")
	rev, err := Build(ctx, BuildOptions{Dir: dir, Output: out})
	require.NoError(t, err)
	assert.Equal(t, "policy@r7", rev.String())
	loaded, err := Load(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, "r7", loaded.Revision())
	assert.Equal(t, []string{"t"}, loaded.Roots())
}

func TestBuildWritesNothingOnFailure(t *testing.T) {
	ctx := context.Background()
	outDir := t.TempDir()
	out := filepath.Join(outDir, "policy.tar.gz")

	unversioned := writeBundle(t, map[string]string{"p.rego": scaledPolicy})
	_, err := Build(ctx, BuildOptions{Dir: unversioned, Output: out})
	assert.ErrorContains(t, err, "has no revision")

	broken := writeBundle(t, map[string]string{
		".manifest": `{"revision": "r1"}`,
		"p.rego":    "package t\n\ndecision := nope(1)\n",
	})
	_, err = Build(ctx, BuildOptions{Dir: broken, Output: out})
	var ce *CompileError
	require.ErrorAs(t, err, &ce)

	// A good build first, then a failing one over it: the good one stays.
	_, err = Build(ctx, BuildOptions{Dir: labelled(t, "good"), Output: out})
	require.NoError(t, err)
	_, err = Build(ctx, BuildOptions{Dir: broken, Output: out})
	require.Error(t, err)
	loaded, err := Load(ctx, out)
	require.NoError(t, err)
	assert.Equal(t, "good", loaded.Revision())

	entries, err := os.ReadDir(outDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left behind")
}
