// Package acttest is what the actuators' tests share: a real API server (test/cluster) with
// a client, namespaces, workloads, a client that counts writes, managedFields and polling
// helpers. Only tests import it.
package acttest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"governor.dev/governor/test/cluster"
)

// Creator is the field manager the tests create objects as ("another manager").
const Creator = "test-creator"

// Scheme has the built-in Kubernetes types.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// Env is a real kube-apiserver and etcd with an admin client.
type Env struct {
	*cluster.APIServer
	// Client talks to the API server directly (no cache).
	Client client.WithWatch
}

// Start starts a real kube-apiserver and etcd for t, stopped in t.Cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	s := cluster.StartAPIServer(t)
	return &Env{APIServer: s, Client: NewClient(t, s.Config)}
}

// NewClient is an uncached client for cfg with the built-in types.
func NewClient(t testing.TB, cfg *rest.Config) client.WithWatch {
	t.Helper()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Ctx is a context for one test, ended after timeout or when the test ends.
func Ctx(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

var nsSeq atomic.Int64

// Namespace creates a namespace of its own for t.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t%d", nsSeq.Add(1))}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// Requests is a ResourceList from name, quantity pairs: Requests("cpu", "100m", "memory", "64Mi").
func Requests(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

// Container is a container with an image and the given requests.
func Container(name string, requests corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Image: "registry.example/" + name + ":1", Resources: corev1.ResourceRequirements{Requests: requests}}
}

// Deployment is a Deployment of replicas Pods labelled app=name with the containers.
func Deployment(ns, name string, replicas int32, containers ...corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: containers},
			},
		},
	}
}

// StatefulSet is a StatefulSet of replicas Pods labelled app=name with the containers.
func StatefulSet(ns, name string, replicas int32, containers ...corev1.Container) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: containers},
			},
		},
	}
}

// Create creates obj as field manager Creator.
func (e *Env) Create(t testing.TB, obj client.Object) {
	t.Helper()
	if err := e.Client.Create(context.Background(), obj, client.FieldOwner(Creator)); err != nil {
		t.Fatalf("create %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// Get reads obj (by its namespace and name) again from the API server.
func (e *Env) Get(t testing.TB, obj client.Object) {
	t.Helper()
	if err := e.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("get %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// Pod is a Pod labelled app=app with one container, controlled by owner when it is not nil.
func Pod(ns, name, app string, owner client.Object, ownerKind string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{Container("app", nil)}},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{ControllerRef(owner, ownerKind)}
	}
	return pod
}

// ControllerRef is a controller owner reference to owner (of group apps, kind kind).
func ControllerRef(owner client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: appsv1.SchemeGroupVersion.String(), Kind: kind, Name: owner.GetName(), UID: owner.GetUID(),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
}

// Fields returns the managedFields fieldsV1 (JSON) of manager's entry for subresource ("" for
// the main resource) with operation op, or "" when there is none.
func Fields(obj client.Object, manager string, op metav1.ManagedFieldsOperationType, subresource string) string {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == manager && mf.Operation == op && mf.Subresource == subresource && mf.FieldsV1 != nil {
			return mf.FieldsV1.GetRawString()
		}
	}
	return ""
}

// Managers lists the managedFields entries of obj as "manager/operation/subresource".
func Managers(obj client.Object) []string {
	var out []string
	for _, mf := range obj.GetManagedFields() {
		out = append(out, fmt.Sprintf("%s/%s/%s", mf.Manager, mf.Operation, mf.Subresource))
	}
	return out
}

// JSON is v as indented JSON, for messages.
func JSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// Writes counts the writes a client makes (Create, Update, Patch, Apply, Delete and their
// subresource forms).
type Writes struct{ n atomic.Int64 }

// N is the number of writes so far.
func (w *Writes) N() int64 { return w.n.Load() }

// Counting wraps c in a client that counts its writes in w; before, when not nil, runs
// before each write with its number (1 for the first) and verb (to race it, say).
func Counting(c client.WithWatch, w *Writes, before func(ctx context.Context, n int64, verb string) error) client.WithWatch {
	hook := func(ctx context.Context, verb string) error {
		n := w.n.Add(1)
		if before != nil {
			return before(ctx, n, verb)
		}
		return nil
	}
	return interceptor.NewClient(c, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := hook(ctx, "create"); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := hook(ctx, "update"); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if err := hook(ctx, "patch"); err != nil {
				return err
			}
			return c.Patch(ctx, obj, p, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if err := hook(ctx, "apply"); err != nil {
				return err
			}
			return c.Apply(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if err := hook(ctx, "delete"); err != nil {
				return err
			}
			return c.Delete(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if err := hook(ctx, sub+" update"); err != nil {
				return err
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := hook(ctx, sub+" patch"); err != nil {
				return err
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
		SubResourceApply: func(ctx context.Context, c client.Client, sub string, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
			if err := hook(ctx, sub+" apply"); err != nil {
				return err
			}
			return c.SubResource(sub).Apply(ctx, obj, opts...)
		},
	})
}

// Eventually polls cond every 100 ms until it returns true, failing t with the last message
// cond gave after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
