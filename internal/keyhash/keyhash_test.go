package keyhash

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Similar keys (names differing in a digit) spread evenly: a thousand of
// them cover each tenth of [0, 1), none with more than twice its share.
func TestSimilarKeysSpread(t *testing.T) {
	var tenths [10]int
	for i := range 1000 {
		f := Fraction("scale", fmt.Sprintf("loop-%04d", i))
		if !assert.True(t, f >= 0 && f < 1, "fraction %v", f) {
			return
		}
		tenths[int(f*10)]++
	}
	for i, n := range tenths {
		assert.Greater(t, n, 50, "tenth %d", i)
		assert.Less(t, n, 200, "tenth %d", i)
	}
}

// Parts are kept apart: ("ab", "") is not ("a", "b").
func TestPartsKeptApart(t *testing.T) {
	assert.NotEqual(t, Sum("ab", ""), Sum("a", "b"))
	assert.Equal(t, Sum("a", "b"), Sum("a", "b"))
}
