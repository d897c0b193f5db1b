package controller

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
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
	if err := pruneObservations(ctx, r.Loops.Client, &loop); err != nil {
		return ctrl.Result{}, err
	}
	r.Loops.Ensure(req.NamespacedName)
	return ctrl.Result{}, nil
}

// pruneObservations removes the observations no collector of the loop
// names any longer. Only those keys are removed (a merge patch setting
// them to null): a push arriving meanwhile is kept.
func pruneObservations(ctx context.Context, c client.Client, loop *v1alpha1.ControlLoop) error {
	declared := map[string]bool{}
	for _, col := range loop.Spec.Collectors {
		declared[col.Name] = true
	}
	gone := map[string]any{}
	for name := range loop.Status.Observations {
		if !declared[name] {
			gone[name] = nil
		}
	}
	if len(gone) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observations": gone}})
	if err != nil {
		return err
	}
	err = c.Status().Patch(ctx, loop, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pruning the observations of removed collectors: %w", err)
	}
	return nil
}

// SetupWithManager watches ControlLoops' specs and observations: either
// wakes the loop's runner (the runners' own status writes do not).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ControlLoop{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, newObservations))).
		Named("controlloop").
		Complete(r)
}

// newObservations passes the updates of a loop that bring it observations
// (a push): its runner ticks on them without waiting for its interval.
var newObservations = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, ok1 := e.ObjectOld.(*v1alpha1.ControlLoop)
		cur, ok2 := e.ObjectNew.(*v1alpha1.ControlLoop)
		return ok1 && ok2 && !equality.Semantic.DeepEqual(old.Status.Observations, cur.Status.Observations)
	},
}
