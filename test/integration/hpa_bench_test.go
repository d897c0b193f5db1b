//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/controller"
	"governor.dev/governor/workload"
)

// BenchmarkFindHPA is a target's HPA looked up through the manager's
// cache, as the hpa and replicas actuators do at each read of each target,
// in a namespace of 100 HPAs.
func BenchmarkFindHPA(b *testing.B) {
	e := newEnv(b)
	mgr, _ := e.runManager(b, controller.Options{})
	ns := e.namespace(b)
	ctx := context.Background()
	const hpas = 100
	for i := range hpas {
		require.NoError(b, e.c.Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("h%03d", i)},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: fmt.Sprintf("d%03d", i)},
				MinReplicas:    ptr[int32](1), MaxReplicas: 5,
			},
		}))
	}
	target := workload.Ref{Namespace: ns, Kind: "Deployment", Name: fmt.Sprintf("d%03d", hpas/2)}
	require.Eventually(b, func() bool {
		var list autoscalingv2.HorizontalPodAutoscalerList
		return mgr.GetClient().List(ctx, &list, client.InNamespace(ns)) == nil && len(list.Items) == hpas
	}, 30*time.Second, 50*time.Millisecond, "the cache has the HPAs")
	b.ReportAllocs()
	for b.Loop() {
		h, err := hpa.Find(ctx, mgr.GetClient(), target)
		if err != nil || h == nil {
			b.Fatal(h, err)
		}
	}
}
