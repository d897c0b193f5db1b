package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/workload"
)

// countingReader counts the lists it serves.
type countingReader struct {
	client.Reader
	lists int
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists++
	return r.Reader.List(ctx, list, opts...)
}

// A tick lists its loop's namespace's HPAs once for all its targets, and
// each target still finds its own; another namespace's are listed each time.
func TestTickReaderListsHPAsOncePerNamespace(t *testing.T) {
	scaler := func(ns, name, target string) *autoscalingv2.HorizontalPodAutoscaler {
		return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 5,
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target}}}
	}
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		scaler("a", "web-hpa", "web"), scaler("a", "api-hpa", "api"), scaler("b", "web-hpa", "web")).Build()
	counting := &countingReader{Reader: c}
	ctx := context.Background()
	reads := map[string]*tickReader{} // a tick's of a loop in each namespace

	for _, c := range []struct{ ns, target, want string }{
		{"a", "web", "web-hpa"}, {"a", "api", "api-hpa"}, {"a", "db", ""}, {"b", "web", "web-hpa"}, {"b", "api", ""},
	} {
		r := reads[c.ns]
		if r == nil {
			r = &tickReader{Reader: counting, namespace: c.ns}
			reads[c.ns] = r
		}
		h, err := hpa.Find(ctx, r, workload.Ref{Kind: "Deployment", Namespace: c.ns, Name: c.target})
		require.NoError(t, err)
		if c.want == "" {
			assert.Nil(t, h, "%s/%s", c.ns, c.target)
			continue
		}
		require.NotNil(t, h, "%s/%s", c.ns, c.target)
		assert.Equal(t, c.want, h.Name)
		assert.Equal(t, c.ns, h.Namespace)
	}
	assert.Equal(t, 2, counting.lists, "one list of HPAs per namespace")

	for range 2 {
		h, err := hpa.Find(ctx, reads["a"], workload.Ref{Kind: "Deployment", Namespace: "b", Name: "web"})
		require.NoError(t, err)
		require.NotNil(t, h)
		assert.Equal(t, "b", h.Namespace)
	}
	assert.Equal(t, 4, counting.lists, "another namespace's HPAs are the cache's each time")
	h, err := hpa.Find(ctx, reads["a"], workload.Ref{Kind: "Deployment", Namespace: "a", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, "web-hpa", h.Name, "the loop's namespace's, listed still")
	assert.Equal(t, 4, counting.lists)
}
