package bandwidth

import (
	"context"
	"sync"
	"time"

	"governor.dev/governor/workload"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// PropagationControllerName is the name of the controller SetupPodPropagation registers.
const PropagationControllerName = "bandwidth-propagation"

// Permissions of the propagation controller: watch Pods and annotate them; follow a Pod's
// controller (a ReplicaSet, read as metadata only, and its Deployment; or a StatefulSet).
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=list;watch

// PropagationOptions share the propagation among replicas.
type PropagationOptions struct {
	// Owns says whether the workload of this UID is this replica's to
	// propagate to at once (loops sharded across replicas, with no leader
	// to do it alone); nil: every Pod is (the leader's controller).
	Owns func(uid string) bool
	// Grace is how long a replica that does not own a Pod's workload
	// leaves that Pod to the owner: after it, the Pod still lacking its
	// bandwidth, any replica gives it (the owner may have left).
	Grace time.Duration
}

// SetupPodPropagation registers with mgr the controller that gives Pods the bandwidth
// recorded on their workload in Live mode: a Pod whose controller is a ReplicaSet controlled
// by a Deployment, or a StatefulSet, that carries governor.dev/egress-bandwidth or
// governor.dev/ingress-bandwidth gets kubernetes.io/egress-bandwidth or
// kubernetes.io/ingress-bandwidth set to that value (server-side apply as "governor") where
// it differs. It reconciles a Pod when it appears or its bandwidth annotations change, and
// the Pods of a workload whose recorded value changes (so that a Pod created while Apply
// ran is not missed). A Pod without the annotation gets it at once; a Pod that carries
// another value is left replaceAfter to the Apply that recorded the new one.
//
// It reads through the manager's cache (Pods, ReplicaSets as metadata, Deployments and
// StatefulSets, which must keep their managedFields) and writes with the manager's client.
func SetupPodPropagation(mgr ctrl.Manager, opts PropagationOptions) error {
	r := &propagator{c: mgr.GetClient(), opts: opts, waiting: map[types.NamespacedName]time.Time{}}
	return ctrl.NewControllerManagedBy(mgr).
		Named(PropagationControllerName).
		For(&corev1.Pod{}, builder.WithPredicates(podPredicate())).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.podsOf), builder.WithPredicates(workloadPredicate())).
		Watches(&appsv1.StatefulSet{}, handler.EnqueueRequestsFromMapFunc(r.podsOf), builder.WithPredicates(workloadPredicate())).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

type propagator struct {
	c    client.Client
	opts PropagationOptions

	mu sync.Mutex
	// waiting holds when this replica first found each Pod lacking its
	// bandwidth while another owned the Pod's workload.
	waiting map[types.NamespacedName]time.Time
}

// Reconcile annotates one Pod with its workload's recorded bandwidth. A Pod
// it is not waiting on for another replica is forgotten (settled).
func (r *propagator) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := r.propagate(ctx, req)
	if err == nil && res.RequeueAfter == 0 {
		r.settled(req.NamespacedName)
	}
	return res, err
}

func (r *propagator) propagate(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := &corev1.Pod{}
	if err := r.c.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !live(pod) {
		return reconcile.Result{}, nil
	}
	owner, want, err := r.recorded(ctx, pod)
	if err != nil || want.empty() || len(changes(pod.Annotations, want, podKey)) == 0 {
		return reconcile.Result{}, err
	}
	if wait := r.wait(req.NamespacedName, owner, replacing(pod, want)); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	changed, err := annotatePod(ctx, r.c, pod, want)
	if workload.IsNotFound(err) {
		return reconcile.Result{}, nil
	}
	if changed {
		ctrl.LoggerFrom(ctx).V(1).Info("bandwidth propagated to pod", "egress", want[0], "ingress", want[1])
	}
	return reconcile.Result{}, err
}

// replaceAfter is how long a Pod that carries another bandwidth than its workload records
// is left to the Apply that recorded the new one, which annotates the workload's Pods right
// after: annotated by both at once, one of the two applies on every Pod was refused as a
// Conflict (BenchmarkReaction saw it on every Pod of every change). A Pod without the
// annotation (new, or someone removed it) needs it at once.
const replaceAfter = 2 * time.Second

// replacing reports whether pod carries a value of want's directions that differs from it.
func replacing(pod *corev1.Pod, want values) bool {
	for key := range changes(pod.Annotations, want, podKey) {
		if pod.Annotations[key] != "" {
			return true
		}
	}
	return false
}

// wait is how much longer this replica leaves a Pod that needs its bandwidth to another
// writer: to the replica that owns its workload (the grace) unless it owns it itself, and
// to the Apply in progress when the Pod is being replaced a value (replaceAfter); counted
// from when it first saw the need.
func (r *propagator) wait(pod types.NamespacedName, owner client.Object, replace bool) time.Duration {
	var leave time.Duration
	if r.opts.Owns != nil && !r.opts.Owns(string(owner.GetUID())) {
		leave = r.opts.Grace
	}
	if replace {
		leave = max(leave, replaceAfter)
	}
	if leave == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	first, ok := r.waiting[pod]
	if !ok {
		first = time.Now()
		r.waiting[pod] = first
	}
	return time.Until(first.Add(leave))
}

// settled forgets a Pod that needs nothing more.
func (r *propagator) settled(pod types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, pod)
}

// recorded returns the workload that controls pod and the bandwidth recorded on it (through its
// ReplicaSet for a Deployment); none when there is no such workload or it records none. A
// record that does not parse is logged and ignored (retrying would not fix it).
func (r *propagator) recorded(ctx context.Context, pod *corev1.Pod) (client.Object, values, error) {
	workload, err := r.controllingWorkload(ctx, pod)
	if err != nil || workload == nil {
		return nil, values{}, err
	}
	v, err := parse(workload.GetAnnotations(), desiredKey)
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "ignoring the bandwidth recorded on the pod's workload",
			"workload", client.ObjectKeyFromObject(workload))
		return nil, values{}, nil
	}
	return workload, v, nil
}

// controllingWorkload returns the Deployment (through a ReplicaSet) or the StatefulSet that
// controls pod, or nil. Owner references are followed only where the UID matches (a
// workload deleted and created again under the same name is not the owner).
func (r *propagator) controllingWorkload(ctx context.Context, pod *corev1.Pod) (client.Object, error) {
	ref := appsController(pod)
	if ref == nil {
		return nil, nil
	}
	switch ref.Kind {
	case "StatefulSet":
		sts := &appsv1.StatefulSet{}
		return r.owner(ctx, pod.Namespace, ref, sts)
	case "ReplicaSet":
		rs := &metav1.PartialObjectMetadata{}
		rs.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
		if o, err := r.owner(ctx, pod.Namespace, ref, rs); o == nil || err != nil {
			return nil, err
		}
		dref := appsController(rs)
		if dref == nil || dref.Kind != "Deployment" {
			return nil, nil
		}
		return r.owner(ctx, pod.Namespace, dref, &appsv1.Deployment{})
	}
	return nil, nil
}

// owner reads the object ref names into obj: nil (no error) when it is gone or is another
// object of the same name.
func (r *propagator) owner(ctx context.Context, namespace string, ref *metav1.OwnerReference, obj client.Object) (client.Object, error) {
	if err := r.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, obj); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if obj.GetUID() != ref.UID {
		return nil, nil
	}
	return obj, nil
}

// appsController is obj's controller reference when it is of group apps.
func appsController(obj metav1.Object) *metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil {
		return nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != appsv1.GroupName {
		return nil
	}
	return ref
}

// podsOf maps a workload to the requests of its live Pods (from the cache).
func (r *propagator) podsOf(ctx context.Context, obj client.Object) []reconcile.Request {
	selector := workload.Selector(obj)
	if selector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil || sel.Empty() {
		return nil
	}
	pods := &corev1.PodList{}
	if err := r.c.List(ctx, pods, client.InNamespace(obj.GetNamespace()), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing the pods of a workload", "workload", client.ObjectKeyFromObject(obj))
		return nil
	}
	var reqs []reconcile.Request
	for i := range pods.Items {
		if live(&pods.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pods.Items[i])})
		}
	}
	return reqs
}

// podPredicate passes Pods controlled by a ReplicaSet or a StatefulSet, when they appear and
// when their bandwidth annotations change.
func podPredicate() predicate.Predicate {
	controlled := func(obj client.Object) bool {
		ref := appsController(obj)
		return ref != nil && (ref.Kind == "ReplicaSet" || ref.Kind == "StatefulSet")
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return controlled(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return controlled(e.ObjectNew) && annotationsDiffer(e.ObjectOld, e.ObjectNew, podKey)
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(e event.GenericEvent) bool { return controlled(e.Object) },
	}
}

// workloadPredicate passes a Deployment or StatefulSet that records a bandwidth when it
// appears, and when the recorded bandwidth changes.
func workloadPredicate() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool {
			a := e.Object.GetAnnotations()
			return a[DesiredEgressAnnotation] != "" || a[DesiredIngressAnnotation] != ""
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			return annotationsDiffer(e.ObjectOld, e.ObjectNew, desiredKey)
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func annotationsDiffer(a, b client.Object, key func(direction) string) bool {
	if a == nil || b == nil {
		return true
	}
	for _, d := range directions {
		if a.GetAnnotations()[key(d)] != b.GetAnnotations()[key(d)] {
			return true
		}
	}
	return false
}
