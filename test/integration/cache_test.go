//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
)

// The manager's cache holds ControlLoops without their managedFields (every
// replica caches every loop, and nothing reads them), and targets with
// theirs: an actuator applies only what it read them with.
func TestCacheKeepsManagedFieldsOfTargetsOnly(t *testing.T) {
	e := newEnv(t)
	mgr, _ := e.runManager(t, controller.Options{})
	ns := e.namespace(t)
	e.deployment(t, ns, "web", 1)
	e.loop(t, ns, "web-loop", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Paused,
		Interval: metav1.Duration{Duration: time.Second},
		Policy:   v1alpha1.PolicySpec{Bundle: "bandwidth", Decision: "governor/bandwidth/decision"},
		Targets:  []v1alpha1.TargetSpec{{Name: "web", Ref: v1alpha1.TargetRef{Kind: "Deployment", Name: "web"}}},
	})
	key := types.NamespacedName{Namespace: ns, Name: "web-loop"}
	require.NotEmpty(t, e.get(t, ns, "web-loop").ManagedFields, "the API server keeps the loop's managedFields")

	ctx := context.Background()
	var cached v1alpha1.ControlLoop
	require.Eventually(t, func() bool { return mgr.GetClient().Get(ctx, key, &cached) == nil }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, cached.ManagedFields, "the cache keeps the loops' managedFields")
	var target appsv1.Deployment
	require.Eventually(t, func() bool {
		return mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, &target) == nil
	}, 10*time.Second, 10*time.Millisecond)
	assert.NotEmpty(t, target.ManagedFields, "the cache strips the targets' managedFields: actuators cannot apply")
}
