package actuators_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/internal/acttest"
)

func TestTargetStringAndValidate(t *testing.T) {
	web := actuators.Target{Kind: "Deployment", Namespace: "factory", Name: "web"}
	assert.Equal(t, "deployment factory/web", web.String())
	assert.NoError(t, web.Validate())
	assert.NoError(t, actuators.Target{Kind: "StatefulSet", Namespace: "factory", Name: "db"}.Validate())
	assert.EqualError(t, actuators.Target{Kind: "DaemonSet", Namespace: "factory", Name: "x"}.Validate(),
		`daemonset factory/x: unsupported kind "DaemonSet" (want Deployment or StatefulSet)`)
	assert.EqualError(t, actuators.Target{Kind: "Deployment", Name: "x"}.Validate(), "deployment /x: namespace is empty")
	assert.EqualError(t, actuators.Target{Kind: "Deployment", Namespace: "factory"}.Validate(), "deployment factory/: name is empty")

	inner := errors.New("boom")
	err := web.Errorf("apply: %w", inner)
	assert.EqualError(t, err, "deployment factory/web: apply: boom")
	assert.ErrorIs(t, err, inner)
}

func TestNewObjectAndAccessors(t *testing.T) {
	obj, err := actuators.Target{Kind: "StatefulSet", Namespace: "ns", Name: "db"}.NewObject()
	require.NoError(t, err)
	sts, ok := obj.(*appsv1.StatefulSet)
	require.True(t, ok)
	assert.Equal(t, "db", sts.Name)
	assert.Same(t, &sts.Spec.Template, actuators.PodTemplate(sts))

	dep := acttest.Deployment("ns", "web", 1)
	assert.Same(t, &dep.Spec.Template, actuators.PodTemplate(dep))
	assert.Same(t, dep.Spec.Selector, actuators.Selector(dep))
	assert.Nil(t, actuators.PodTemplate(&appsv1.DaemonSet{}))
}

// Get reads through any client.Reader; a missing workload is a *NotFoundError that also
// answers apierrors.IsNotFound. (The fake client is enough for this small piece.)
func TestGetNotFound(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(acttest.Scheme).WithObjects(acttest.Deployment("ns", "web", 1)).Build()
	obj, err := actuators.Get(context.Background(), c, actuators.Target{Kind: "Deployment", Namespace: "ns", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, "web", obj.GetName())

	_, err = actuators.Get(context.Background(), c, actuators.Target{Kind: "Deployment", Namespace: "ns", Name: "api"})
	var nf *actuators.NotFoundError
	require.True(t, errors.As(err, &nf))
	assert.EqualError(t, err, "deployment ns/api: not found")
	assert.True(t, actuators.IsNotFound(err))
	assert.True(t, apierrors.IsNotFound(err))
	assert.True(t, actuators.IsNotFound(fmt.Errorf("wrapped: %w", err)))
	assert.False(t, actuators.IsNotFound(errors.New("other")))

	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	assert.EqualError(t, actuators.WrapGet("deployment ns/x", apierrors.NewForbidden(gr, "x", errors.New("no"))),
		`deployment ns/x: get: deployments.apps "x" is forbidden: no`)
}

func TestEqualQuantity(t *testing.T) {
	q := resource.MustParse("400M")
	assert.True(t, actuators.EqualQuantity("400M", q))
	assert.True(t, actuators.EqualQuantity("400000k", q))
	assert.True(t, actuators.EqualQuantity("0.4G", q))
	assert.False(t, actuators.EqualQuantity("401M", q))
	assert.False(t, actuators.EqualQuantity("", q))
	assert.False(t, actuators.EqualQuantity("fast", q))
}

// An object read without managedFields (a cache that strips them) is refused: extracting
// governor's fields from it would find none and the apply would drop them.
func TestRequireManagedFields(t *testing.T) {
	dep := acttest.Deployment("ns", "web", 1)
	assert.ErrorContains(t, actuators.RequireManagedFields(dep), "read without managedFields")
	dep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	assert.NoError(t, actuators.RequireManagedFields(dep))
}
