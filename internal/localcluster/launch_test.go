//go:build integration

package localcluster

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// testAssets is the repository's bin/k8s; the test fails, in one line saying
// what is missing and how to build it, when it is incomplete.
func testAssets(t *testing.T) string {
	t.Helper()
	assets, err := Assets()
	if err != nil {
		t.Fatal(err)
	}
	return assets
}

// The repository's bin/k8s is complete, and a ctx that has ended stops
// LaunchAPIServer before it starts anything.
func TestLaunchCancelled(t *testing.T) {
	assets := testAssets(t)
	require.NoError(t, CheckAssets(assets))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := LaunchAPIServer(ctx, LaunchOptions{AssetsDir: assets})
	require.ErrorIs(t, err, context.Canceled)
}

// Launch and Stop without testing.TB: a CRD given as an object is
// installed, Stop stops every process and removes the temporary log
// directory, and a second Stop is harmless.
func TestLaunchStop(t *testing.T) {
	assets := testAssets(t)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.governor.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.governor.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptrTo(true)}}}},
		},
	}
	var logged []string
	logger := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	start := time.Now()
	c, err := Launch(context.Background(), LaunchOptions{
		AssetsDir: assets,
		Options:   Options{Nodes: 1},
		CRDs:      []*apiextensionsv1.CustomResourceDefinition{crd},
		Logger:    logger,
	})
	require.NoError(t, err)
	t.Logf("Launch: %v", time.Since(start).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	assert.Equal(t, []string{"kwok-node-0"}, c.Nodes)
	assert.DirExists(t, c.LogDir)
	assert.FileExists(t, c.Kubeconfig)
	assert.Equal(t, assets, c.AssetsDir())
	require.NoError(t, c.Err())
	out, err := c.Kubectl("get", "widgets", "-A")
	require.NoError(t, err, out)
	require.Len(t, c.procs, 3)
	assert.NotEmpty(t, logged, "progress goes to the logger")

	stopped = true
	require.NoError(t, c.Stop())
	for _, p := range c.procs {
		select {
		case <-p.exited:
		default:
			t.Errorf("%s still runs after Stop", p.name)
		}
	}
	assert.NoError(t, c.Err(), "stopped by Stop: not an error")
	assert.NoDirExists(t, c.LogDir, "a temporary log directory is removed")
	cs, err := kubernetes.NewForConfig(c.Config)
	require.NoError(t, err)
	_, err = cs.Discovery().ServerVersion()
	assert.Error(t, err, "the API server is down")
	require.NoError(t, c.Stop(), "a second Stop")
}

func ptrTo[T any](v T) *T { return &v }
