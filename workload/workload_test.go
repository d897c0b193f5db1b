package workload

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"governor.dev/governor/api/v1alpha1"
)

func deployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}}}
}

// An empty kind is a Deployment, as the CRD defaults it.
func TestOf(t *testing.T) {
	assert.Equal(t, Ref{Kind: "Deployment", Namespace: "factory", Name: "web"}, Of("factory", v1alpha1.TargetRef{Name: "web"}))
	assert.Equal(t, Ref{Kind: "StatefulSet", Namespace: "factory", Name: "db"}, Of("factory", v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}))
}

func TestRefStringAndValidate(t *testing.T) {
	web := Ref{Kind: "Deployment", Namespace: "factory", Name: "web"}
	assert.Equal(t, "deployment factory/web", web.String())
	assert.NoError(t, web.Validate())
	assert.NoError(t, Ref{Kind: "StatefulSet", Namespace: "factory", Name: "db"}.Validate())
	assert.EqualError(t, Ref{Kind: "DaemonSet", Namespace: "factory", Name: "x"}.Validate(),
		`daemonset factory/x: unsupported kind "DaemonSet" (want Deployment or StatefulSet)`)
	assert.EqualError(t, Ref{Kind: "Deployment", Name: "x"}.Validate(), "deployment /x: namespace is empty")
	assert.EqualError(t, Ref{Kind: "Deployment", Namespace: "factory"}.Validate(), "deployment factory/: name is empty")

	inner := errors.New("boom")
	err := web.Errorf("apply: %w", inner)
	assert.EqualError(t, err, "deployment factory/web: apply: boom")
	assert.ErrorIs(t, err, inner)
}

func TestNewObjectAndAccessors(t *testing.T) {
	obj, err := Ref{Kind: "StatefulSet", Namespace: "ns", Name: "db"}.NewObject()
	require.NoError(t, err)
	sts, ok := obj.(*appsv1.StatefulSet)
	require.True(t, ok)
	assert.Equal(t, "db", sts.Name)
	assert.Same(t, &sts.Spec.Template, PodTemplate(sts))

	dep := deployment("ns", "web")
	assert.Same(t, &dep.Spec.Template, PodTemplate(dep))
	assert.Same(t, dep.Spec.Selector, Selector(dep))
	assert.Nil(t, PodTemplate(&appsv1.DaemonSet{}))
}

// Get reads through any client.Reader; a missing workload is a *NotFoundError that also
// answers apierrors.IsNotFound. (The fake client is enough for this small piece.)
func TestGetNotFound(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(deployment("ns", "web")).Build()
	obj, err := Get(context.Background(), c, Ref{Kind: "Deployment", Namespace: "ns", Name: "web"})
	require.NoError(t, err)
	assert.Equal(t, "web", obj.GetName())

	_, err = Get(context.Background(), c, Ref{Kind: "Deployment", Namespace: "ns", Name: "api"})
	var nf *NotFoundError
	require.True(t, errors.As(err, &nf))
	assert.EqualError(t, err, "deployment ns/api: not found")
	assert.True(t, IsNotFound(err))
	assert.True(t, apierrors.IsNotFound(err))
	assert.True(t, IsNotFound(fmt.Errorf("wrapped: %w", err)))
	assert.False(t, IsNotFound(errors.New("other")))

	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	assert.EqualError(t, WrapGet("deployment ns/x", apierrors.NewForbidden(gr, "x", errors.New("no"))),
		`deployment ns/x: get: deployments.apps "x" is forbidden: no`)
}
