package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
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
	r.Loops.Ensure(req.NamespacedName)
	return ctrl.Result{}, nil
}

// SetupWithManager watches ControlLoops' specs (status writes, the runners'
// own, do not wake them).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ControlLoop{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("controlloop").
		Complete(r)
}
