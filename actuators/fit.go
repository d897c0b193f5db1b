package actuators

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
)

// Fit is what the guard learns while fitting one action's set into its target's bounds.
type Fit struct {
	// OutOfBounds is how a current value outside its bounds is brought back (the target's
	// spec.targets[].outOfBounds): Step when empty.
	OutOfBounds v1alpha1.OutOfBounds
	// Clamps say what was changed to fit.
	Clamps []string
	// Refusal is why the whole action is refused, if it is.
	Refusal string
	// Changes is whether the fitted set differs from the current state.
	Changes bool
}

// Refuse refuses the action; the first reason stands.
func (f *Fit) Refuse(format string, args ...any) {
	if f.Refusal == "" {
		f.Refusal = fmt.Sprintf(format, args...)
	}
}

// Quantity fits a quantity into a range (see Fit.Int). A range with a negative bound, min
// above max or a maxStep that is not above 0 is refused: the CRD refuses them, and the guard
// does not trust that it was there to (replay, or a loop stored before the rules).
func (f *Fit) Quantity(want resource.Quantity, r v1alpha1.QuantityRange, cur *resource.Quantity, what string) *resource.Quantity {
	switch {
	case r.Min.Sign() < 0:
		f.Refuse("%s: bounds min %s is negative", what, r.Min.String())
	case r.Min.Cmp(r.Max) > 0:
		f.Refuse("%s: bounds min %s is above max %s", what, r.Min.String(), r.Max.String())
	case r.MaxStep != nil && r.MaxStep.Sign() <= 0:
		f.Refuse("%s: maxStep %s is not above 0", what, r.MaxStep.String())
	}
	if f.Refusal != "" {
		return nil
	}
	// A copy: got may be one of the bounds or want, which share their digits with the spec
	// and the decision.
	got := fitInto(f, quantities{}, want, r.Min, r.Max, r.MaxStep, cur, what).DeepCopy()
	if cur == nil || got.Cmp(*cur) != 0 {
		f.Changes = true
	}
	return &got
}

// Int fits an integer into [lo, hi] and, when step > 0 (0 is no limit) and the current value
// is known, to one step from it. A current value inside the bounds gives a value inside
// them; one outside moves toward them and never away (f.OutOfBounds: by one step, or to the
// nearest bound at once). Bounds below 0, lo above hi or a negative step are refused. It
// does not judge whether the result changes anything.
func (f *Fit) Int(want, lo, hi, step int64, cur *int64, what string) int64 {
	switch {
	case lo < 0:
		f.Refuse("%s: bounds min %d is negative", what, lo)
	case lo > hi:
		f.Refuse("%s: bounds min %d is above max %d", what, lo, hi)
	case step < 0:
		f.Refuse("%s: maxStep %d is negative", what, step)
	}
	if f.Refusal != "" {
		return 0
	}
	var s *int64
	if step > 0 {
		s = &step
	}
	return fitInto(f, ints{}, want, lo, hi, s, cur, what)
}

// arithmetic is what fitInto needs of a kind of number.
type arithmetic[T any] interface {
	cmp(a, b T) int
	add(a, b T) T
	sub(a, b T) T
	str(a T) string
}

// fitInto clamps want to [lo, hi] (valid bounds), then limits the move from cur (when
// known) to step (when limited). A cur outside the bounds moves toward them: by at most
// step, or (Snap) to the nearest bound, whatever was asked.
func fitInto[T any](f *Fit, n arithmetic[T], want, lo, hi T, step, cur *T, what string) T {
	outside := cur != nil && (n.cmp(*cur, lo) < 0 || n.cmp(*cur, hi) > 0)
	if outside && f.OutOfBounds == v1alpha1.Snap {
		nearest := hi
		if n.cmp(*cur, lo) < 0 {
			nearest = lo
		}
		if n.cmp(want, nearest) != 0 {
			f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s: the current %s is outside [%s, %s], set to the nearest bound %s (outOfBounds: Snap)",
				what, n.str(want), n.str(*cur), n.str(lo), n.str(hi), n.str(nearest)))
		}
		return nearest
	}
	got := want
	if n.cmp(got, lo) < 0 {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s raised to the minimum %s", what, n.str(want), n.str(lo)))
		got = lo
	}
	if n.cmp(got, hi) > 0 {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s lowered to the maximum %s", what, n.str(want), n.str(hi)))
		got = hi
	}
	if cur == nil || step == nil {
		return got
	}
	// got is within [lo, hi]: from a cur outside them, these limits only ever hold it back
	// on its way toward them.
	toward := ""
	if outside {
		toward = fmt.Sprintf(", toward [%s, %s] (outOfBounds: Step)", n.str(lo), n.str(hi))
	}
	up, down := n.add(*cur, *step), n.sub(*cur, *step)
	switch {
	case n.cmp(got, up) > 0:
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s limited to one step (%s) above %s%s", what, n.str(got), n.str(*step), n.str(*cur), toward))
		got = up
	case n.cmp(got, down) < 0:
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s limited to one step (%s) below %s%s", what, n.str(got), n.str(*step), n.str(*cur), toward))
		got = down
	}
	return got
}

type ints struct{}

func (ints) cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add saturates: a current value read from a workload may be anything.
func (ints) add(a, b int64) int64 {
	if s := a + b; (s > a) == (b > 0) {
		return s
	}
	if b > 0 {
		return 1<<63 - 1
	}
	return -1 << 63
}

// sub saturates too; b is a step, above 0.
func (i ints) sub(a, b int64) int64 { return i.add(a, -b) }
func (ints) str(a int64) string     { return fmt.Sprint(a) }

type quantities struct{}

func (quantities) cmp(a, b resource.Quantity) int { return a.Cmp(b) }
func (quantities) add(a, b resource.Quantity) resource.Quantity {
	s := a.DeepCopy()
	s.Add(b)
	return s
}
func (quantities) sub(a, b resource.Quantity) resource.Quantity {
	s := a.DeepCopy()
	s.Sub(b)
	return s
}
func (quantities) str(a resource.Quantity) string { return a.String() }
