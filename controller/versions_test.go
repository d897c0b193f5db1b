package controller

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"governor.dev/governor/api/v1alpha1"
)

// A listing of the loops' versions answers every runner that asks for one
// sent after a time it already was: a join's runners share one; one that
// asks for a later time gets a listing of its own.
func TestListedVersionsAreSharedUntilANewerOneIsAskedFor(t *testing.T) {
	sch := runtime.NewScheme()
	require.NoError(t, v1alpha1.AddToScheme(sch))
	loop := quietLoop(t, "web", "web-uid", time.Hour)
	var lists atomic.Int32
	api := interceptor.NewClient(fake.NewClientBuilder().WithScheme(sch).WithObjects(loop).Build(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lists.Add(1)
			return c.List(ctx, list, opts...)
		},
	})
	var stored v1alpha1.ControlLoop
	key := client.ObjectKeyFromObject(loop)
	require.NoError(t, api.Get(context.Background(), key, &stored))

	var v listedVersions
	before := time.Now()
	assert.Equal(t, stored.ResourceVersion, v.of(context.Background(), api, key, before))
	assert.Equal(t, stored.ResourceVersion, v.of(context.Background(), api, key, before), "asked for the same time")
	assert.Equal(t, int32(1), lists.Load(), "a listing sent after the time asked for was not shared")
	assert.Empty(t, v.of(context.Background(), api, types.NamespacedName{Namespace: key.Namespace, Name: "other"}, before), "a loop the listing did not have")

	stored.Labels = map[string]string{"written": "since"}
	require.NoError(t, api.Update(context.Background(), &stored))
	assert.Equal(t, stored.ResourceVersion, v.of(context.Background(), api, key, time.Now()), "a listing sent before the time asked for answered")
	assert.Equal(t, int32(2), lists.Load())
}
