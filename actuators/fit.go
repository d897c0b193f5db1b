package actuators

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/api/v1alpha1"
)

// Fit is what the guard learns while fitting one action's set into its target's bounds.
type Fit struct {
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

// Quantity clamps a quantity to a range and, when the current value is known, to one step
// from it.
func (f *Fit) Quantity(want resource.Quantity, r v1alpha1.QuantityRange, cur *resource.Quantity, what string) *resource.Quantity {
	got := want.DeepCopy()
	if got.Cmp(r.Min) < 0 {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s raised to the minimum %s", what, want.String(), r.Min.String()))
		got = r.Min.DeepCopy()
	}
	if got.Cmp(r.Max) > 0 {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s lowered to the maximum %s", what, want.String(), r.Max.String()))
		got = r.Max.DeepCopy()
	}
	if r.MaxStep != nil && cur != nil {
		hi := cur.DeepCopy()
		hi.Add(*r.MaxStep)
		lo := cur.DeepCopy()
		lo.Sub(*r.MaxStep)
		switch {
		case got.Cmp(hi) > 0:
			f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s limited to one step (%s) above %s", what, got.String(), r.MaxStep.String(), cur.String()))
			got = hi
		case got.Cmp(lo) < 0:
			f.Clamps = append(f.Clamps, fmt.Sprintf("%s %s limited to one step (%s) below %s", what, got.String(), r.MaxStep.String(), cur.String()))
			got = lo
		}
	}
	if cur == nil || got.Cmp(*cur) != 0 {
		f.Changes = true
	}
	return &got
}

// Int clamps an integer to [lo, hi] and, when step > 0 and the current value is known, to
// one step from it. It does not judge whether the result changes anything.
func (f *Fit) Int(want, lo, hi, step int64, cur *int64, what string) int64 {
	got := want
	if got < lo {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %d raised to the minimum %d", what, want, lo))
		got = lo
	}
	if got > hi {
		f.Clamps = append(f.Clamps, fmt.Sprintf("%s %d lowered to the maximum %d", what, want, hi))
		got = hi
	}
	if step > 0 && cur != nil {
		switch {
		case got > *cur+step:
			f.Clamps = append(f.Clamps, fmt.Sprintf("%s %d limited to one step (%d) above %d", what, got, step, *cur))
			got = *cur + step
		case got < *cur-step:
			f.Clamps = append(f.Clamps, fmt.Sprintf("%s %d limited to one step (%d) below %d", what, got, step, *cur))
			got = *cur - step
		}
	}
	return got
}
