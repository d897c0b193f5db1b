//go:build integration

package resources_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/internal/acttest"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
)

var req = acttest.Requests

func container(t *testing.T, obj client.Object, name string) corev1.Container {
	t.Helper()
	for _, c := range workload.PodTemplate(obj).Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func assertQuantity(t *testing.T, want string, l corev1.ResourceList, name corev1.ResourceName) {
	t.Helper()
	q, ok := l[name]
	if assert.True(t, ok, "%s missing from %v", name, l) {
		assert.Zero(t, q.Cmp(resource.MustParse(want)), "%s: got %s, want %s", name, q.String(), want)
	}
}

// TestResources runs the resources actuator against a real kube-apiserver.
func TestResources(t *testing.T) {
	env := acttest.Start(t)

	// Applying requests.memory of one container changes just that: requests.cpu (the
	// creator's), the other container and the rest of the template stay, with their owner;
	// governor owns exactly requests.memory of that container (and its key). The template
	// changes, so the Deployment's generation moves (it rolls). A second Apply of the same
	// value, written differently, makes no write.
	t.Run("SetsOnlyTheGivenResources", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 2,
			acttest.Container("app", req("cpu", "100m", "memory", "64Mi")),
			acttest.Container("sidecar", req("cpu", "50m")))
		env.Create(t, dep)
		gen := dep.Generation
		target := workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"}
		var writes acttest.Writes
		c := acttest.Counting(env.Client, &writes, nil)

		changed, err := resources.Apply(ctx, c, target, map[string]resources.Container{"app": {Requests: req("memory", "128Mi")}})
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 1, writes.N())

		env.Get(t, dep)
		app := container(t, dep, "app")
		assertQuantity(t, "128Mi", app.Resources.Requests, "memory")
		assertQuantity(t, "100m", app.Resources.Requests, "cpu")
		assert.Empty(t, app.Resources.Limits)
		assert.Equal(t, "registry.example/app:1", app.Image)
		assertQuantity(t, "50m", container(t, dep, "sidecar").Resources.Requests, "cpu")
		assert.Greater(t, dep.Generation, gen, "the template changed")
		assert.JSONEq(t, `{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{
			".":{},"f:name":{},"f:resources":{"f:requests":{"f:memory":{}}}}}}}}}`,
			acttest.Fields(dep, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
		creator := acttest.Fields(dep, acttest.Creator, metav1.ManagedFieldsOperationUpdate, "")
		assert.Contains(t, creator, `"f:cpu"`, "the creator still owns requests.cpu")
		assert.Contains(t, creator, `"f:image"`)

		rv := dep.ResourceVersion
		changed, err = resources.Apply(ctx, c, target, map[string]resources.Container{"app": {Requests: req("memory", "134217728")}})
		require.NoError(t, err)
		assert.False(t, changed)
		assert.EqualValues(t, 1, writes.N(), "no write for an unchanged value")
		env.Get(t, dep)
		assert.Equal(t, rv, dep.ResourceVersion)
	})

	// What governor set before stays when a later apply is about other fields: the extract
	// of governor's own fields is sent again. This holds across actuators too: replicas
	// (scale subresource) and the template bandwidth annotations survive a resources apply,
	// and the resources survive the others.
	t.Run("KeepsWhatGovernorSetBefore", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		sts := acttest.StatefulSet(ns, "db", 1, acttest.Container("db", req("cpu", "100m")))
		env.Create(t, sts)
		target := workload.Ref{Kind: "StatefulSet", Namespace: ns, Name: "db"}

		_, err := resources.Apply(ctx, env.Client, target, map[string]resources.Container{"db": {Requests: req("cpu", "200m")}})
		require.NoError(t, err)
		_, err = replicas.Apply(ctx, env.Client, target, 3)
		require.NoError(t, err)
		egress := resource.MustParse("300M")
		_, err = bandwidth.Apply(ctx, env.Client, target, &egress, nil, bandwidth.ModeTemplate)
		require.NoError(t, err)
		changed, err := resources.Apply(ctx, env.Client, target, map[string]resources.Container{"db": {
			Limits: req("memory", "256Mi", "cpu", "1")}})
		require.NoError(t, err)
		assert.True(t, changed)

		env.Get(t, sts)
		db := container(t, sts, "db")
		assertQuantity(t, "200m", db.Resources.Requests, "cpu")
		assertQuantity(t, "256Mi", db.Resources.Limits, "memory")
		assertQuantity(t, "1", db.Resources.Limits, "cpu")
		assert.Equal(t, int32(3), *sts.Spec.Replicas)
		assert.Equal(t, "300M", sts.Spec.Template.Annotations[bandwidth.EgressAnnotation])
		assert.JSONEq(t, `{"f:spec":{"f:template":{
			"f:metadata":{"f:annotations":{"f:kubernetes.io/egress-bandwidth":{}}},
			"f:spec":{"f:containers":{"k:{\"name\":\"db\"}":{".":{},"f:name":{},
				"f:resources":{"f:requests":{"f:cpu":{}},"f:limits":{"f:cpu":{},"f:memory":{}}}}}}}}}`,
			acttest.Fields(sts, actuators.FieldManager, metav1.ManagedFieldsOperationApply, ""))
	})

	// An unknown container name is refused before any write, naming the container and the
	// ones the template has.
	t.Run("RefusesAnUnknownContainer", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 1, acttest.Container("app", nil), acttest.Container("sidecar", nil))
		env.Create(t, dep)
		var writes acttest.Writes
		changed, err := resources.Apply(ctx, acttest.Counting(env.Client, &writes, nil),
			workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"},
			map[string]resources.Container{"app": {Requests: req("cpu", "1")}, "nope": {Requests: req("cpu", "1")}})
		assert.False(t, changed)
		var unknown *resources.UnknownContainerError
		require.True(t, errors.As(err, &unknown), "error %v", err)
		assert.EqualError(t, err, `deployment `+ns+`/web: unknown container "nope" (containers: app, sidecar)`)
		assert.Zero(t, writes.N())
		rv := dep.ResourceVersion
		env.Get(t, dep)
		assert.Equal(t, rv, dep.ResourceVersion)
	})

	// An invalid result (requests above limits) is the API server's refusal, said with where.
	t.Run("ReportsTheAPIServersRefusal", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 1, acttest.Container("app", req("cpu", "100m")))
		dep.Spec.Template.Spec.Containers[0].Resources.Limits = req("cpu", "200m")
		env.Create(t, dep)
		_, err := resources.Apply(ctx, env.Client, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"},
			map[string]resources.Container{"app": {Requests: req("cpu", "500m")}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "deployment "+ns+"/web: apply: ")
		assert.Contains(t, err.Error(), "must be less than or equal to cpu limit")
	})

	// A write that races another writer gets a Conflict, reads again and succeeds; the
	// other writer's change is kept.
	t.Run("RetriesOnConflict", func(t *testing.T) {
		ctx := acttest.Ctx(t, time.Minute)
		ns := env.Namespace(t)
		dep := acttest.Deployment(ns, "web", 1, acttest.Container("app", req("cpu", "100m")))
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
			other.Spec.Template.Spec.Containers[0].Image = "registry.example/app:2"
			return env.Client.Update(ctx, other, client.FieldOwner("racer"))
		})
		changed, err := resources.Apply(ctx, c, workload.Ref{Kind: "Deployment", Namespace: ns, Name: "web"},
			map[string]resources.Container{"app": {Requests: req("memory", "1Gi")}})
		require.NoError(t, err)
		assert.True(t, changed)
		assert.EqualValues(t, 2, writes.N())
		env.Get(t, dep)
		app := container(t, dep, "app")
		assertQuantity(t, "1Gi", app.Resources.Requests, "memory")
		assertQuantity(t, "100m", app.Resources.Requests, "cpu")
		assert.Equal(t, "registry.example/app:2", app.Image)
	})
}
