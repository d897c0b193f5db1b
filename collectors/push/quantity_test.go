package push_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
)

func TestQuantity(t *testing.T) {
	for v, want := range map[float64]string{
		2.4: "2400m", 0.1 + 0.2: "300m", 0.7: "700m", -3.5: "-3500m", 0: "0", 42: "42",
		2.4e-5: "24u", 1e-12: "0", 7e-10: "1n", -7e-10: "-1n", 1.2345678901234567e-5: "12346n",
		123456789.123456789: "123456789.123456791", 1e20: "100e18", 1.5e19: "1.5e+19",
	} {
		q, err := push.Quantity(v)
		require.NoError(t, err, v)
		assert.Equal(t, want, q.String(), "%v", v)
	}
	for _, v := range []float64{math.Inf(1), math.Inf(-1), math.NaN()} {
		_, err := push.Quantity(v)
		assert.Error(t, err, v)
	}
	// What the controller reads back (collectors.Set: AsApproximateFloat64) is within 5e-10
	// absolute (half the resolution) plus 1e-15 relative of what was pushed.
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		v := math.Copysign(math.Pow(10, r.Float64()*60-15), r.Float64()-0.5)
		q, err := push.Quantity(v)
		require.NoError(t, err, v)
		got := q.AsApproximateFloat64()
		assert.LessOrEqual(t, math.Abs(got-v), 5e-10+1e-15*math.Abs(v), "%v -> %s -> %v", v, q.String(), got)
	}
}
