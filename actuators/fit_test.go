package actuators_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/api/resource"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
)

func i64(v int64) *int64 { return &v }
func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// The bug of issue 12: a negative maxStep moved a value away from the one asked, and out of
// the bounds (500M with a step of -50M gave 450M, 400M, ... 0, -50M). Such bounds are refused.
func TestFitRefusesBrokenBounds(t *testing.T) {
	cases := []struct {
		name string
		fit  func(f *actuators.Fit)
		why  string
	}{
		{"negative quantity step", func(f *actuators.Fit) {
			f.Quantity(*qty("510M"), v1alpha1.QuantityRange{Min: *qty("100M"), Max: *qty("1000M"), MaxStep: qty("-50M")}, qty("500M"), "egress")
		}, "egress: maxStep -50M is not above 0"},
		{"zero quantity step", func(f *actuators.Fit) {
			f.Quantity(*qty("510M"), v1alpha1.QuantityRange{Min: *qty("100M"), Max: *qty("1000M"), MaxStep: qty("0")}, qty("500M"), "egress")
		}, "egress: maxStep 0 is not above 0"},
		{"negative quantity min", func(f *actuators.Fit) {
			f.Quantity(*qty("1"), v1alpha1.QuantityRange{Min: *qty("-1"), Max: *qty("2")}, nil, "cpu")
		}, "cpu: bounds min -1 is negative"},
		{"quantity min above max", func(f *actuators.Fit) {
			f.Quantity(*qty("1"), v1alpha1.QuantityRange{Min: *qty("3"), Max: *qty("2")}, nil, "cpu")
		}, "cpu: bounds min 3 is above max 2"},
		{"negative step", func(f *actuators.Fit) { f.Int(5, 1, 10, -2, i64(3), "replicas") }, "replicas: maxStep -2 is negative"},
		{"negative min", func(f *actuators.Fit) { f.Int(5, -1, 10, 0, i64(3), "replicas") }, "replicas: bounds min -1 is negative"},
		{"min above max", func(f *actuators.Fit) { f.Int(5, 10, 1, 0, i64(3), "replicas") }, "replicas: bounds min 10 is above max 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f actuators.Fit
			tc.fit(&f)
			assert.Equal(t, tc.why, f.Refusal)
		})
	}
}

// A value found outside its bounds (scaled by hand to 100 with max 10 and maxStep 2) moves
// toward them whatever is asked: by one step (Step, the default), or to the nearest bound at
// once (Snap).
func TestFitOutOfBounds(t *testing.T) {
	cases := []struct {
		name       string
		mode       v1alpha1.OutOfBounds
		want, step int64
		cur        int64
		got        int64
		note       string
	}{
		{"step down, asked lower", "", 5, 2, 100, 98, "replicas 5 limited to one step (2) below 100, toward [1, 10] (outOfBounds: Step)"},
		{"step down, asked higher", v1alpha1.Step, 500, 2, 100, 98, "replicas 500 lowered to the maximum 10"},
		{"step up from below", v1alpha1.Step, 0, 2, 0, 1, "replicas 0 raised to the minimum 1"},
		{"no step: where asked within the bounds", v1alpha1.Step, 4, 0, 100, 4, ""},
		{"snap down", v1alpha1.Snap, 5, 2, 100, 10, "replicas 5: the current 100 is outside [1, 10], set to the nearest bound 10 (outOfBounds: Snap)"},
		{"snap, asked away", v1alpha1.Snap, 500, 2, 100, 10, "replicas 500: the current 100 is outside [1, 10], set to the nearest bound 10 (outOfBounds: Snap)"},
		{"snap up", v1alpha1.Snap, 7, 0, 0, 1, "replicas 7: the current 0 is outside [1, 10], set to the nearest bound 1 (outOfBounds: Snap)"},
		{"snap inside the bounds is a step", v1alpha1.Snap, 9, 2, 5, 7, "replicas 9 limited to one step (2) above 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := actuators.Fit{OutOfBounds: tc.mode}
			got := f.Int(tc.want, 1, 10, tc.step, i64(tc.cur), "replicas")
			assert.Equal(t, tc.got, got)
			assert.Empty(t, f.Refusal)
			if tc.note != "" {
				assert.Contains(t, f.Clamps, tc.note)
			}
		})
	}

	// Quantities alike: 2G with bounds [100M, 1G] and a step of 300M.
	r := v1alpha1.QuantityRange{Min: *qty("100M"), Max: *qty("1G"), MaxStep: qty("300M")}
	f := actuators.Fit{}
	assert.Equal(t, "1700M", f.Quantity(*qty("2G"), r, qty("2G"), "egress").String())
	f = actuators.Fit{OutOfBounds: v1alpha1.Snap}
	assert.Equal(t, "1G", f.Quantity(*qty("500M"), r, qty("2G"), "egress").String())
	assert.True(t, f.Changes)
}

// Saturating arithmetic: a current value at the ends of int64 does not wrap around.
func TestFitIntDoesNotOverflow(t *testing.T) {
	f := actuators.Fit{}
	assert.Equal(t, int64(1<<63-1-5), f.Int(10, 1, 10, 5, i64(1<<63-1), "n"))
	assert.Equal(t, int64(-1<<63+5), f.Int(1, 1, 10, 5, i64(-1<<63), "n"))
}
