package controller

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
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
// each target still finds its own; other lists are the cache's each time.
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

	r := reads["a"]
	var copied, elsewhere autoscalingv2.HorizontalPodAutoscalerList
	require.NoError(t, r.List(ctx, &copied, client.InNamespace("a")))
	assert.Len(t, copied.Items, 2)
	require.NoError(t, r.List(ctx, &elsewhere, client.InNamespace("b"), client.UnsafeDisableDeepCopy))
	assert.Len(t, elsewhere.Items, 1)
	require.NoError(t, r.List(ctx, &corev1.PodList{}, client.InNamespace("a"), client.UnsafeDisableDeepCopy))
	assert.Equal(t, 5, counting.lists, "a list that may be changed, of another namespace or of another kind is the cache's")
}
