//go:build integration

package replicas_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/internal/acttest"
	"governor.dev/governor/actuators/replicas"
)

func hpaFor(ns, name, kind, target string) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: kind, Name: target},
			MinReplicas:    ptr.To[int32](1),
			MaxReplicas:    10,
		},
	}
}

// TestReplicas runs the replicas actuator against a real kube-apiserver.
func TestReplicas(t *testing.T) {
	env := acttest.Start(t)

	// Both kinds are scaled through the scale subresource by server-side apply: spec.replicas
	// changes, governor owns exactly spec.replicas (as an Apply on subresource scale), the
	// creator keeps the rest, and a second identical Apply makes no write.
	t.Run("ScalesThroughScaleSubresourceIdempotently", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 1, acttest.Container("app", nil))
		sts := acttest.StatefulSet(ns, "db", 1, acttest.Container("db", nil))
		env.Create(t, dep)
		env.Create(t, sts)
		for _, tc := range []struct {
			target workload.Ref
			obj    client.Object
			spec   func() *int32
		}{
			{workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, dep, func() *int32 { return dep.Spec.Replicas }},
			{workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}, sts, func() *int32 { return sts.Spec.Replicas }},
		} {
			var writes acttest.Writes
			c := acttest.Counting(env.Client, &writes, nil)

			changed, err := replicas.Apply(ctx, c, tc.target, 4)
			require.NoError(t, err)
			assert.True(t, changed)
			assert.EqualValues(t, 1, writes.N())
			env.Get(t, tc.obj)
			assert.Equal(t, int32(4), *tc.spec())
			assert.JSONEq(t, `{"f:spec":{"f:replicas":{}}}`,
				acttest.Fields(tc.obj, actuators.FieldManager, metav1.ManagedFieldsOperationApply, "scale"),
				"managers: %v", acttest.Managers(tc.obj))
			assert.Empty(t, acttest.Fields(tc.obj, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
			assert.Contains(t, acttest.Fields(tc.obj, acttest.Creator, metav1.ManagedFieldsOperationUpdate, ""), `"f:template"`)

			rv := tc.obj.GetResourceVersion()
			changed, err = replicas.Apply(ctx, c, tc.target, 4)
			require.NoError(t, err)
			assert.False(t, changed)
			assert.EqualValues(t, 1, writes.N(), "no write for an unchanged value")
			env.Get(t, tc.obj)
			assert.Equal(t, rv, tc.obj.GetResourceVersion())

			scale, err := replicas.Get(ctx, c, tc.target)
			require.NoError(t, err)
			assert.Equal(t, int32(4), scale.Spec.Replicas)
		}
	})

	// An HPA scaling the workload owns its replicas: Apply refuses with *OwnedByHPAError and
	// writes nothing. An HPA of another workload (or another kind) does not count.
	t.Run("RefusesWhenAnHPAOwnsReplicas", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 2, acttest.Container("app", nil))
		env.Create(t, dep)
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		env.Create(t, hpaFor(ns, "other-hpa", "Deployment", "other"))
		env.Create(t, hpaFor(ns, "sts-hpa", "StatefulSet", "web"))

		name, err := replicas.OwnerHPA(ctx, env.Client, target)
		require.NoError(t, err)
		assert.Empty(t, name)

		env.Create(t, hpaFor(ns, "web-hpa", "Deployment", "web"))
		name, err = replicas.OwnerHPA(ctx, env.Client, target)
		require.NoError(t, err)
		assert.Equal(t, "web-hpa", name)

		env.Get(t, dep)
		rv := dep.ResourceVersion
		var writes acttest.Writes
		changed, err := replicas.Apply(ctx, acttest.Counting(env.Client, &writes, nil), target, 5)
		assert.False(t, changed)
		var owned *replicas.OwnedByHPAError
		require.True(t, errors.As(err, &owned), "error %v", err)
		assert.Equal(t, "web-hpa", owned.HPA)
		assert.Equal(t, "replicas of deployment "+ns+"/web are owned by HPA "+ns+"/web-hpa: declare hpa bounds instead", err.Error())
		assert.Zero(t, writes.N())
		env.Get(t, dep)
		assert.Equal(t, rv, dep.ResourceVersion)
		assert.Equal(t, int32(2), *dep.Spec.Replicas)
	})

	// A write that races another writer (the Deployment changes between the actuator's read
	// and its apply) gets a Conflict on its resourceVersion precondition, reads again and
	// succeeds; the other writer's change is kept.
	t.Run("RetriesOnConflict", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 1, acttest.Container("app", nil))
		env.Create(t, dep)
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, func(ctx context.Context, n int64, verb string) error {
			if n != 1 {
				return nil
			}
			other := &appsv1.Deployment{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dep), other); err != nil {
				return err
			}
			other.Labels = map[string]string{"raced": "yes"}
			return env.Client.Update(ctx, other, client.FieldOwner("racer"))
		})
		changed, err := replicas.Apply(ctx, c, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, 3)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 2, writes.N(), "one apply lost the race, the second won")
		env.Get(t, dep)
		assert.Equal(t, int32(3), *dep.Spec.Replicas)
		assert.Equal(t, "yes", dep.Labels["raced"])
	})

	// Errors say what and where.
	t.Run("Errors", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		_, err := replicas.Apply(ctx, env.Client, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "missing"}, 1)
		require.Error(t, err)
		assert.True(t, workload.IsNotFound(err))
		assert.Equal(t, "deployment "+ns+"/missing: not found", err.Error())

		_, err = replicas.Apply(ctx, env.Client, workload.Ref{Kind: "DaemonSet", Namespace: ns, Name: "x"}, 1)
		assert.EqualError(t, err, `daemonset `+ns+`/x: unsupported kind "DaemonSet" (want Deployment or StatefulSet)`)

		env.Create(t, acttest.Deployment(ns, "web", 1, acttest.Container("app", nil)))
		_, err = replicas.Apply(ctx, env.Client, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}, -1)
		assert.EqualError(t, err, "deployment "+ns+"/web: replicas -1 is negative")
	})
}
