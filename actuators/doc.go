package actuators

import "k8s.io/apimachinery/pkg/api/resource"

// Whole is q as a whole number of units of 10^scale ("250m" at resource.Milli is 250), when
// it is exactly one and fits in an int64: input.targets gives it beside the quantity
// string, so that a policy need not parse the string. A fraction of the unit, or a value
// too large, is not whole: the policy then reads the string.
func Whole(q resource.Quantity, scale resource.Scale) (int64, bool) {
	v := q.ScaledValue(scale) // rounded up; meaningless when it overflows
	return v, resource.NewScaledQuantity(v, scale).Cmp(q) == 0
}
