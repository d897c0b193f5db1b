package actuators

import (
	"encoding/json"
	"reflect"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Whole is q as a whole number of units of 10^scale ("250m" at resource.Milli is 250), when
// it is exactly one and fits in an int64: input.targets gives it beside the quantity
// string, so that a policy need not parse the string. A fraction of the unit, or a value
// too large, is not whole: the policy then reads the string.
func Whole(q resource.Quantity, scale resource.Scale) (int64, bool) {
	v := q.ScaledValue(scale) // rounded up; meaningless when it overflows
	return v, resource.NewScaledQuantity(v, scale).Cmp(q) == 0
}

// SameDoc says whether two JSON documents (as actuators make them, and JSON decodes them) are
// equal, without allocating: one map is the same as itself at once. Values of other types
// are never the same.
func SameDoc(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		if reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer() {
			return true
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !SameDoc(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !SameDoc(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil, string, bool, int, int64, float64, json.Number:
		return a == b
	}
	return false
}
