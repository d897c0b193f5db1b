// Package workload names the workloads a loop changes (a Deployment or a StatefulSet of
// apps/v1) and reads them: the reference, its object, pod template and selector, and errors
// that say what and where. It is the vocabulary the actuators and collectors share.
package workload

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
)

// The kinds of workload a Ref may name (group apps, version v1).
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Ref is a workload a loop may change: Kind "Deployment" or "StatefulSet" (apps/v1), in
// Namespace.
type Ref struct{ Kind, Namespace, Name string }

// Of is the workload a loop's target names, in the loop's namespace. An empty kind is a
// Deployment, as the CRD defaults it.
func Of(namespace string, ref v1alpha1.TargetRef) Ref {
	kind := string(ref.Kind)
	if kind == "" {
		kind = KindDeployment
	}
	return Ref{Kind: kind, Namespace: namespace, Name: ref.Name}
}

// String is the target as errors name it: "deployment factory/web".
func (t Ref) String() string {
	kind := strings.ToLower(t.Kind)
	if kind == "" {
		kind = "workload"
	}
	return kind + " " + t.Namespace + "/" + t.Name
}

// Key is the object key of the workload.
func (t Ref) Key() client.ObjectKey {
	return client.ObjectKey{Namespace: t.Namespace, Name: t.Name}
}

// Validate checks that the target names a supported kind, a namespace and a name.
func (t Ref) Validate() error {
	switch {
	case t.Kind != KindDeployment && t.Kind != KindStatefulSet:
		return fmt.Errorf("%s: unsupported kind %q (want %s or %s)", t, t.Kind, KindDeployment, KindStatefulSet)
	case t.Namespace == "":
		return fmt.Errorf("%s: namespace is empty", t)
	case t.Name == "":
		return fmt.Errorf("%s: name is empty", t)
	}
	return nil
}

// Errorf returns an error that says where: "deployment factory/web: " and the message. %w in
// format wraps as fmt.Errorf does.
func (t Ref) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{t}, args...)...)
}

// NewObject returns an empty typed object of the target's kind, with its namespace and name
// set: *appsv1.Deployment or *appsv1.StatefulSet.
func (t Ref) NewObject() (client.Object, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	meta := metav1.ObjectMeta{Namespace: t.Namespace, Name: t.Name}
	if t.Kind == KindDeployment {
		return &appsv1.Deployment{ObjectMeta: meta}, nil
	}
	return &appsv1.StatefulSet{ObjectMeta: meta}, nil
}

// NotFoundError says that an object an actuator was to change does not exist. It wraps the
// API server's NotFound, so apierrors.IsNotFound is true for it too.
type NotFoundError struct {
	// What is the object as errors name it: "deployment factory/web".
	What string
	Err  error
}

func (e *NotFoundError) Error() string { return e.What + ": not found" }
func (e *NotFoundError) Unwrap() error { return e.Err }

// IsNotFound reports whether err is (or wraps) a *NotFoundError or the API server's NotFound.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf) || apierrors.IsNotFound(err)
}

// WrapGet turns an error of a Get of what into one that says what: a *NotFoundError for
// NotFound, "what: get: ..." otherwise, nil for nil.
func WrapGet(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return &NotFoundError{What: what, Err: err}
	default:
		return fmt.Errorf("%s: get: %w", what, err)
	}
}

// Get reads the target's workload: *appsv1.Deployment or *appsv1.StatefulSet. A workload
// that does not exist is a *NotFoundError.
func Get(ctx context.Context, c client.Reader, t Ref, opts ...client.GetOption) (client.Object, error) {
	obj, err := t.NewObject()
	if err != nil {
		return nil, err
	}
	if err := c.Get(ctx, t.Key(), obj, opts...); err != nil {
		return nil, WrapGet(t.String(), err)
	}
	return obj, nil
}

// View reads the target's workload as Get does, but from a cache without a copy: the
// cache's own object, which the caller must only read (a change would change it for every
// reader of the cache). A copy of every target's workload at every tick was a tenth of
// governor's CPU with 1,000 loops (BenchmarkScale). Other readers copy, as Get.
func View(ctx context.Context, c client.Reader, t Ref) (client.Object, error) {
	if v, ok := c.(Viewer); ok {
		if obj, ok, err := v.ViewWorkload(ctx, t); ok {
			return obj, err
		}
	}
	return Get(ctx, c, t, client.UnsafeDisableDeepCopy)
}

// A Viewer is a reader that can hand out its cache's own object of a workload, as the
// cache's store holds it: even a Get that does not copy the object copies it into a new
// one, a tenth of all that 1,000 loops of 10 targets allocated (BenchmarkScale).
type Viewer interface {
	// ViewWorkload is t's object, or a *NotFoundError; ok is false when the reader cannot
	// say (View then reads it as Get does).
	ViewWorkload(ctx context.Context, t Ref) (obj client.Object, ok bool, err error)
}

// PodTemplate returns the pod template of a Deployment or StatefulSet (nil for other types).
func PodTemplate(obj client.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	}
	return nil
}

// Selector returns the pod selector of a Deployment or StatefulSet (nil for other types).
func Selector(obj client.Object) *metav1.LabelSelector {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Selector
	case *appsv1.StatefulSet:
		return o.Spec.Selector
	}
	return nil
}
