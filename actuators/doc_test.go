package actuators_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/actuators"
)

// A quantity is given to policies as a number only when it is exactly a whole number of
// the unit: otherwise they must read the string, which says exactly what it is.
func TestWhole(t *testing.T) {
	for _, c := range []struct {
		q     string
		scale resource.Scale
		want  int64
		whole bool
	}{
		{"500M", 0, 500000000, true},
		{"1G", 0, 1000000000, true},
		{"128Mi", 0, 134217728, true},
		{"999999", 0, 999999, true},
		{"0", 0, 0, true},
		{"250m", resource.Milli, 250, true},
		{"1", resource.Milli, 1000, true},
		{"1.5", resource.Milli, 1500, true},
		{"2000m", 0, 2, true},
		{"500m", 0, 0, false},              // half a bit per second
		{"100u", resource.Milli, 0, false}, // a tenth of a millicore
		{"1.5", 0, 0, false},
		{"10E", resource.Milli, 0, false}, // 10^22 millicores: more than an int64
		{"1e30", 0, 0, false},
	} {
		got, whole := actuators.Whole(resource.MustParse(c.q), c.scale)
		assert.Equal(t, c.whole, whole, c.q)
		if c.whole {
			assert.Equal(t, c.want, got, c.q)
		}
	}
}
