package bandwidth

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestMode(t *testing.T) {
	for in, want := range map[string]string{"": ModeLive, "Live": ModeLive, "Template": ModeTemplate} {
		got, err := Mode(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := Mode("live")
	assert.EqualError(t, err, `unknown bandwidth mode "live" (want Live or Template)`)
}

func TestChangesAndParse(t *testing.T) {
	e, i := resource.MustParse("400M"), resource.MustParse("1G")
	have := map[string]string{EgressAnnotation: "400000k", IngressAnnotation: "500M", "other": "x"}
	assert.Equal(t, map[string]string{IngressAnnotation: "1G"}, changes(have, values{&e, &i}, podKey))
	assert.Empty(t, changes(have, values{&e, nil}, podKey))
	assert.Equal(t, map[string]string{DesiredEgressAnnotation: "400M"}, changes(nil, values{&e, nil}, desiredKey))
	assert.Equal(t, map[string]string{EgressAnnotation: "400M"}, changes(map[string]string{EgressAnnotation: "bad"}, values{&e, nil}, podKey))

	v, err := parse(map[string]string{DesiredIngressAnnotation: "25M"}, desiredKey)
	require.NoError(t, err)
	assert.Nil(t, v[0])
	assert.Equal(t, "25M", v[1].String())
	_, err = parse(map[string]string{DesiredEgressAnnotation: "fast"}, desiredKey)
	assert.ErrorContains(t, err, `governor.dev/egress-bandwidth: "fast" is not a Kubernetes quantity`)
}

func TestPredicates(t *testing.T) {
	owned := func(kind, apiVersion string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: annotations, OwnerReferences: []metav1.OwnerReference{
			{APIVersion: apiVersion, Kind: kind, Name: "x", Controller: ptr.To(true)}}}}
	}
	p := podPredicate()
	assert.True(t, p.Create(event.CreateEvent{Object: owned("ReplicaSet", "apps/v1", nil)}))
	assert.True(t, p.Create(event.CreateEvent{Object: owned("StatefulSet", "apps/v1", nil)}))
	assert.False(t, p.Create(event.CreateEvent{Object: owned("Job", "batch/v1", nil)}))
	assert.False(t, p.Create(event.CreateEvent{Object: owned("ReplicaSet", "example.com/v1", nil)}))
	assert.False(t, p.Create(event.CreateEvent{Object: &corev1.Pod{}}))
	old := owned("ReplicaSet", "apps/v1", map[string]string{EgressAnnotation: "1M"})
	assert.False(t, p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: owned("ReplicaSet", "apps/v1", map[string]string{EgressAnnotation: "1M", "x": "y"})}))
	assert.True(t, p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: owned("ReplicaSet", "apps/v1", nil)}))

	w := workloadPredicate()
	rec := func(a map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: a}}
	}
	assert.True(t, w.Create(event.CreateEvent{Object: rec(map[string]string{DesiredIngressAnnotation: "1M"})}))
	assert.False(t, w.Create(event.CreateEvent{Object: rec(nil)}))
	assert.True(t, w.Update(event.UpdateEvent{ObjectOld: rec(nil), ObjectNew: rec(map[string]string{DesiredEgressAnnotation: "1M"})}))
	assert.False(t, w.Update(event.UpdateEvent{ObjectOld: rec(map[string]string{DesiredEgressAnnotation: "1M"}), ObjectNew: rec(map[string]string{DesiredEgressAnnotation: "1M", "x": "y"})}))
}

// input.targets.<name>.bandwidth: the quantity as a string and, when it is whole, in bits
// per second.
func TestDoc(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	assert.Equal(t, map[string]any{}, Actuator{}.Doc(Value{}))
	assert.Equal(t, map[string]any{"egress": "400M", "egress_bps": int64(400000000)}, Actuator{}.Doc(Value{Egress: q("400M")}))
	assert.Equal(t, map[string]any{"egress": "500m", "ingress": "1G", "ingress_bps": int64(1000000000)},
		Actuator{}.Doc(Value{Egress: q("500m"), Ingress: q("1G")}))
}
