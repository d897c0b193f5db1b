// Package actuators holds what the actuators of Governor share: the Target a loop may change,
// reading it, errors that say what and where, and the way every actuator writes (server-side
// apply as field manager "governor", forced, with a resourceVersion precondition and retry on
// conflict).
//
// The actuators themselves are the sub-packages bandwidth, replicas, resources and hpa. Each
// one reads the current value first and makes no write when nothing would change, and returns
// (changed bool, err error).
//
// Server-side apply and "leave the rest alone": an apply as field manager "governor" claims
// exactly the fields it sends, and removes any field "governor" owned before but no longer
// sends. So an actuator never builds its apply configuration from scratch: it extracts what
// "governor" owns now (client-go's Extract* functions, with the current values), changes the
// fields it was asked to change and applies that. The extraction is only valid for the
// resourceVersion it was read at, so the apply carries that resourceVersion as a precondition
// and a conflict reads again (RetryOnConflict).
package actuators

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the server-side apply field manager of every write Governor makes.
const FieldManager = "governor"

// The kinds of workload a Target may name (group apps, version v1).
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Target is a workload a loop may change: Kind "Deployment" or "StatefulSet" (apps/v1), in
// Namespace.
type Target struct{ Kind, Namespace, Name string }

// String is the target as errors name it: "deployment factory/web".
func (t Target) String() string {
	kind := strings.ToLower(t.Kind)
	if kind == "" {
		kind = "workload"
	}
	return kind + " " + t.Namespace + "/" + t.Name
}

// Key is the object key of the workload.
func (t Target) Key() client.ObjectKey {
	return client.ObjectKey{Namespace: t.Namespace, Name: t.Name}
}

// Validate checks that the target names a supported kind, a namespace and a name.
func (t Target) Validate() error {
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
func (t Target) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{t}, args...)...)
}

// NewObject returns an empty typed object of the target's kind, with its namespace and name
// set: *appsv1.Deployment or *appsv1.StatefulSet.
func (t Target) NewObject() (client.Object, error) {
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
func Get(ctx context.Context, c client.Reader, t Target) (client.Object, error) {
	obj, err := t.NewObject()
	if err != nil {
		return nil, err
	}
	if err := c.Get(ctx, t.Key(), obj); err != nil {
		return nil, WrapGet(t.String(), err)
	}
	return obj, nil
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

// Backoff is how an actuator retries a write that lost a race (a Conflict on its
// resourceVersion precondition): six tries over about 0.3 s, long enough for a cached client to
// catch up with the write that won.
var Backoff = wait.Backoff{Steps: 6, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1}

// RetryOnConflict runs fn again while it returns a Conflict, with Backoff.
func RetryOnConflict(fn func() error) error {
	return retry.RetryOnConflict(Backoff, fn)
}

// ApplyOptions are the options of every apply: field manager "governor", forced (the loop is
// the declared authority over the fields it sends).
func ApplyOptions() []client.ApplyOption {
	return []client.ApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership}
}

// SubResourceApplyOptions are ApplyOptions for a subresource, with its body.
func SubResourceApplyOptions(body runtime.ApplyConfiguration) []client.SubResourceApplyOption {
	return []client.SubResourceApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership,
		&client.SubResourceApplyOptions{SubResourceBody: body}}
}

// EqualQuantity reports whether the string s (an annotation value, say) parses to the same
// quantity as q. An empty or unparsable s is not equal.
func EqualQuantity(s string, q resource.Quantity) bool {
	if s == "" {
		return false
	}
	p, err := resource.ParseQuantity(s)
	return err == nil && p.Cmp(q) == 0
}
