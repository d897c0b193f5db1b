//go:build integration

package hpa_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/internal/acttest"
)

// TestHPA runs the hpa actuator against a real kube-apiserver.
func TestHPA(t *testing.T) {
	env := acttest.Start(t)

	// Each bound is applied alone and the other is kept (a bound governor set before
	// included); governor owns exactly the bounds it set; the creator keeps the rest; an
	// identical Apply makes no write.
	t.Run("SetsBoundsIdempotently", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		h := newHPA(ns, "web-hpa", "apps/v1", "Deployment", "web", ptr.To[int32](1), 10)
		env.Create(t, h)
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, nil)

		changed, err := hpa.Apply(ctx, c, ns, "web-hpa", ptr.To[int32](2), nil)
		require.NoError(t, err)
		assert.True(t, changed)
		env.Get(t, h)
		assert.Equal(t, int32(2), *h.Spec.MinReplicas)
		assert.Equal(t, int32(10), h.Spec.MaxReplicas)
		assert.JSONEq(t, `{"f:spec":{"f:minReplicas":{}}}`,
			acttest.Fields(h, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))

		changed, err = hpa.Apply(ctx, c, ns, "web-hpa", nil, ptr.To[int32](8))
		require.NoError(t, err)
		assert.True(t, changed)
		env.Get(t, h)
		assert.Equal(t, int32(2), *h.Spec.MinReplicas, "the bound governor set before is kept")
		assert.Equal(t, int32(8), h.Spec.MaxReplicas)
		assert.JSONEq(t, `{"f:spec":{"f:minReplicas":{},"f:maxReplicas":{}}}`,
			acttest.Fields(h, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		assert.Contains(t, acttest.Fields(h, acttest.Creator, metav1.ManagedFieldsOperationUpdate, ""), `"f:scaleTargetRef"`)
		assert.EqualValues(t, 2, writes.N())

		rv := h.ResourceVersion
		changed, err = hpa.Apply(ctx, c, ns, "web-hpa", ptr.To[int32](2), ptr.To[int32](8))
		require.NoError(t, err)
		assert.False(t, changed)
		changed, err = hpa.Apply(ctx, c, ns, "web-hpa", nil, nil)
		require.NoError(t, err)
		assert.False(t, changed)
		assert.EqualValues(t, 2, writes.N(), "no write for unchanged bounds")
		env.Get(t, h)
		assert.Equal(t, rv, h.ResourceVersion)
	})

	// Bounds whose result has min above max are refused before any write, checked against
	// the object as it is (a bound not given is the current one).
	t.Run("RefusesMinAboveMax", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		h := newHPA(ns, "web-hpa", "apps/v1", "Deployment", "web", ptr.To[int32](3), 10)
		env.Create(t, h)
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, nil)
		for _, tc := range []struct {
			minR, maxR *int32
			msg        string
		}{
			{ptr.To[int32](11), nil, "minReplicas 11 would exceed maxReplicas 10"},
			{nil, ptr.To[int32](2), "minReplicas 3 would exceed maxReplicas 2"},
			{ptr.To[int32](6), ptr.To[int32](5), "minReplicas 6 would exceed maxReplicas 5"},
		} {
			changed, err := hpa.Apply(ctx, c, ns, "web-hpa", tc.minR, tc.maxR)
			assert.False(t, changed)
			var bounds *hpa.BoundsError
			require.True(t, errors.As(err, &bounds), "error %v", err)
			assert.EqualError(t, err, "horizontalpodautoscaler "+ns+"/web-hpa: "+tc.msg)
		}
		assert.Zero(t, writes.N())
		rv := h.ResourceVersion
		env.Get(t, h)
		assert.Equal(t, rv, h.ResourceVersion)
	})

	// Find returns the HPA whose scaleTargetRef is the workload (group apps, same kind and
	// name), nil when there is none.
	t.Run("FindsTheHPAOfAWorkload", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		web := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		env.Create(t, newHPA(ns, "a-sts", "apps/v1", "StatefulSet", "web", nil, 3))
		env.Create(t, newHPA(ns, "b-other-group", "example.com/v1", "Deployment", "web", nil, 3))
		env.Create(t, newHPA(ns, "c-other-name", "apps/v1", "Deployment", "api", nil, 3))
		found, err := hpa.Find(ctx, env.Client, web)
		require.NoError(t, err)
		assert.Nil(t, found)

		env.Create(t, newHPA(ns, "web-hpa", "apps/v1", "Deployment", "web", nil, 3))
		found, err = hpa.Find(ctx, env.Client, web)
		require.NoError(t, err)
		require.NotNil(t, found)
		assert.Equal(t, "web-hpa", found.Name)
		assert.Equal(t, int32(1), *found.Spec.MinReplicas, "defaulted by the API server")

		// Of several, the first by name.
		env.Create(t, newHPA(ns, "z-web-hpa", "apps/v1", "Deployment", "web", nil, 3))
		found, err = hpa.Find(ctx, env.Client, web)
		require.NoError(t, err)
		assert.Equal(t, "web-hpa", found.Name)
		env.Create(t, newHPA(ns, "0-web-hpa", "apps/v1", "Deployment", "web", nil, 3))
		found, err = hpa.Find(ctx, env.Client, web)
		require.NoError(t, err)
		assert.Equal(t, "0-web-hpa", found.Name)

		found, err = hpa.Find(ctx, env.Client, workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "web"})
		require.NoError(t, err)
		require.NotNil(t, found)
		assert.Equal(t, "a-sts", found.Name)
	})

	// A write that races another writer gets a Conflict, reads again and succeeds; the
	// other writer's change is kept.
	t.Run("RetriesOnConflict", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		h := newHPA(ns, "web-hpa", "apps/v1", "Deployment", "web", ptr.To[int32](1), 10)
		env.Create(t, h)
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, func(ctx context.Context, n int64, verb string) error {
			if n != 1 {
				return nil
			}
			other := &autoscalingv2.HorizontalPodAutoscaler{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), other); err != nil {
				return err
			}
			other.Spec.MaxReplicas = 12
			return env.Client.Update(ctx, other, client.FieldOwner("racer"))
		})
		changed, err := hpa.Apply(ctx, c, ns, "web-hpa", ptr.To[int32](4), nil)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 2, writes.N())
		env.Get(t, h)
		assert.Equal(t, int32(4), *h.Spec.MinReplicas)
		assert.Equal(t, int32(12), h.Spec.MaxReplicas)
	})

	t.Run("NotFound", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		_, err := hpa.Apply(ctx, env.Client, ns, "missing", ptr.To[int32](1), nil)
		require.Error(t, err)
		assert.True(t, workload.IsNotFound(err))
		assert.EqualError(t, err, "horizontalpodautoscaler "+ns+"/missing: not found")
	})
}
