package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"governor.dev/governor/api/v1alpha1"
)

// Reconciler keeps one runner per ControlLoop. Runners read their loop's
// spec at every tick, so a spec change needs no more than a wake-up.
type Reconciler struct {
	Loops *Loops
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var loop v1alpha1.ControlLoop
	err := r.Loops.Client.Get(ctx, req.NamespacedName, &loop)
	switch {
	case apierrors.IsNotFound(err):
		r.Loops.Remove(req.NamespacedName)
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, err
	case loop.DeletionTimestamp != nil:
		r.Loops.Remove(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if !r.Loops.ensureAssigned(req.NamespacedName, &loop) {
		r.Loops.Release(req.NamespacedName)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager watches ControlLoops' specs and observations: either
// wakes the loop's runner (the runners' own status writes do not); and,
// sharded, a loop handed on by its owner.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ControlLoop{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, newObservations, r.handedOn()))).
		Named("controlloop").
		Complete(r)
}

// newObservations passes the updates of a loop that bring it observations
// (a push): its runner ticks on them without waiting for its interval.
var newObservations = updates(func(old, cur *v1alpha1.ControlLoop) bool {
	return !equality.Semantic.DeepEqual(old.Status.Observations, cur.Status.Observations)
})

// updates passes the updates of a loop that pass, and nothing else.
func updates(pass func(old, cur *v1alpha1.ControlLoop) bool) predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, ok1 := e.ObjectOld.(*v1alpha1.ControlLoop)
			cur, ok2 := e.ObjectNew.(*v1alpha1.ControlLoop)
			return ok1 && ok2 && pass(old, cur)
		},
	}
}

// handedOn passes the updates of a loop whose owner handed it on as it
// stopped (released): to this replica, which takes it at once, or to none,
// for the replica it is assigned to to claim at once. Claimed instead at
// the next renewal (before, a claim refused while the old owner was
// recorded was tried again then), a joining replica's first ticks came
// seconds after its Lease (BenchmarkShards). A claim, which changes the
// owner too, does not pass: it names the claimer, which took the loop
// under its epoch (handedTo); nor do the owner's ticks.
func (r *Reconciler) handedOn() predicate.Funcs {
	return updates(func(old, cur *v1alpha1.ControlLoop) bool {
		if old.Status.Owner == nil || r.Loops.Shard == nil {
			return false
		}
		if cur.Status.Owner == nil {
			return true
		}
		self, ok := r.Loops.Shard.Self()
		return ok && *ownerOf(cur.Status.Owner) != *ownerOf(old.Status.Owner) &&
			r.Loops.handedTo(self, client.ObjectKeyFromObject(cur), cur.Status.Owner)
	})
}
