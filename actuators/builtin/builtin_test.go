package builtin

import (
	"context"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/api/v1alpha1"
)

// sharedCache answers as controller-runtime's cache does for a read without a copy
// (client.UnsafeDisableDeepCopy): the caller's Deployment shares every map and slice with
// the cached one.
type sharedCache struct {
	client.Reader
	cached *appsv1.Deployment
}

func (c sharedCache) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	d, ok := obj.(*appsv1.Deployment)
	if !ok || key != client.ObjectKeyFromObject(c.cached) {
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	*d = *c.cached
	return nil
}

// List finds nothing (no HPA scales the workload).
func (sharedCache) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// Reading a target's state (workload.View: the cache's own object) leaves the cached
// workload as it was, also when the state read is changed afterwards: every actuator
// copies what it keeps.
func TestReadLeavesTheCachedWorkloadAlone(t *testing.T) {
	cached := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: map[string]string{
			"governor.dev/egress-bandwidth": "10M",
		}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
				},
			}}}},
		},
	}
	pristine := cached.DeepCopy()
	spec := &v1alpha1.TargetSpec{
		Name:      "web",
		Ref:       v1alpha1.TargetRef{Name: "web"},
		Replicas:  &v1alpha1.ReplicaBounds{Min: 1, Max: 5},
		Bandwidth: &v1alpha1.BandwidthBounds{Min: resource.MustParse("1M"), Max: resource.MustParse("100M")},
		Resources: &v1alpha1.ResourceBounds{Containers: []string{"app"}},
	}
	target, doc, err := Actuators.Read(context.Background(), sharedCache{cached: cached}, "ns", spec, nil, actuators.Last{})
	if err != nil {
		t.Fatal(err)
	}
	if !target.Exists || doc["replicas"] != int64(2) {
		t.Fatalf("read %v, want the workload with 2 replicas", doc)
	}
	containers, ok := target.Current[resources.Field].(resources.Containers)
	if !ok || len(containers) != 1 {
		t.Fatalf("resources read %#v, want container app", target.Current[resources.Field])
	}
	for _, c := range containers {
		c.Requests[corev1.ResourceCPU] = resource.MustParse("9")
		c.Limits[corev1.ResourceMemory] = resource.MustParse("9Gi")
	}
	if !equality.Semantic.DeepEqual(cached, pristine) {
		t.Errorf("reading the target changed the cached workload:\n%+v\nwas\n%+v", cached.Spec.Template.Spec.Containers, pristine.Spec.Template.Spec.Containers)
	}
}

// A workload that reads at the UID and resourceVersion of the last read has the states of
// the actuators that read the object alone (and their documents) from that read; any other
// version, object or workload is read again, and the HPA, which is another object, always.
func TestReadTakesObjectStatesFromTheLastRead(t *testing.T) {
	cached := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1", ResourceVersion: "7"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
	}
	spec := &v1alpha1.TargetSpec{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"}, Replicas: &v1alpha1.ReplicaBounds{Min: 1, Max: 5}}
	reader := sharedCache{cached: cached}
	first, doc, err := Actuators.Read(context.Background(), reader, "ns", spec, nil, actuators.Last{})
	if err != nil || doc["replicas"] != int64(2) {
		t.Fatalf("first read: %v, %v", doc, err)
	}

	again, same, err := Actuators.Read(context.Background(), reader, "ns", spec, nil, actuators.LastOf(first, doc))
	if err != nil || reflect.ValueOf(same).UnsafePointer() != reflect.ValueOf(doc).UnsafePointer() {
		t.Errorf("read again at the same version: %v (%v), want the last document itself", same, err)
	}
	if again.Current[hpa.Field] != (*hpa.State)(nil) || !again.Exists {
		t.Errorf("read again: %+v, want a target read (no HPA)", again)
	}

	// A last read that says otherwise than the object, to tell which one a read took.
	last := actuators.LastOf(first, doc)
	last.Current = map[string]any{"replicas": ptr.To[int64](9), "bandwidth": first.Current["bandwidth"],
		"resources": first.Current["resources"], "hpa": first.Current["hpa"]}
	last.Doc = map[string]any{"replicas": int64(9), "bandwidth": doc["bandwidth"], "resources": doc["resources"],
		hpa.Field: map[string]any{"name": "gone"}}
	read := func(change func(*appsv1.Deployment)) (*actuators.Target, map[string]any) {
		t.Helper()
		d := cached.DeepCopy()
		change(d)
		got, doc, err := Actuators.Read(context.Background(), sharedCache{cached: d}, d.Namespace, spec, nil, last)
		if err != nil {
			t.Fatal(err)
		}
		return got, doc
	}

	got, doc := read(func(*appsv1.Deployment) {})
	if doc["replicas"] != int64(9) || *got.Current["replicas"].(*int64) != 9 {
		t.Errorf("the same version read again: replicas %v (%v), want the last read's 9", doc["replicas"], got.Current["replicas"])
	}
	if _, ok := doc[hpa.Field]; ok || got.Current[hpa.Field] != (*hpa.State)(nil) {
		t.Errorf("the HPA was taken from the last read (%v), not read again", doc[hpa.Field])
	}
	for name, change := range map[string]func(*appsv1.Deployment){
		"another version": func(d *appsv1.Deployment) { d.ResourceVersion = "8" },
		"another object":  func(d *appsv1.Deployment) { d.UID = "u2" },
		"no version":      func(d *appsv1.Deployment) { d.ResourceVersion = "" },
	} {
		if got, doc := read(change); doc["replicas"] != int64(2) || *got.Current["replicas"].(*int64) != 2 {
			t.Errorf("%s: replicas %v, want 2 as read", name, doc["replicas"])
		}
	}
	last.Workload.Name = "api"
	if _, doc := read(func(*appsv1.Deployment) {}); doc["replicas"] != int64(2) {
		t.Errorf("another workload's last read: replicas %v, want 2 as read", doc["replicas"])
	}
}

// Only the actuators whose state is the workload object's take it from the last read: the
// HPA's is another object's, an External target's its system's.
func TestObjectActuators(t *testing.T) {
	want := map[string]bool{"replicas": true, "bandwidth": true, "resources": true}
	for _, a := range Actuators.All() {
		if _, ok := a.(actuators.ObjectActuator); ok != want[a.Field()] {
			t.Errorf("%s: reads the object alone %v, want %v", a.Field(), ok, want[a.Field()])
		}
	}
}
