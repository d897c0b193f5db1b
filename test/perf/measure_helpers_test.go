//go:build integration && linux

package perf

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func histogramSample(t *testing.T, counts [4]int) sample {
	t.Helper()
	text := `# TYPE lag histogram
lag_bucket{le="0.01"} ` + strconv.Itoa(counts[0]) + `
lag_bucket{le="0.1"} ` + strconv.Itoa(counts[1]) + `
lag_bucket{le="1"} ` + strconv.Itoa(counts[2]) + `
lag_bucket{le="+Inf"} ` + strconv.Itoa(counts[3]) + `
lag_sum 0
lag_count ` + strconv.Itoa(counts[3]) + `
`
	m, err := parseMetrics(strings.NewReader(text))
	require.NoError(t, err)
	return sample{client: m}
}

// The lag's quantiles and share above a bound are of the observations
// between the two samples, interpolated within a bucket.
func TestHistogramBetweenSamples(t *testing.T) {
	from := histogramSample(t, [4]int{50, 50, 50, 50})                     // before the window: all at most 10ms
	to := histogramSample(t, [4]int{50 + 90, 50 + 98, 50 + 100, 50 + 100}) // in it: 90 ≤ 10ms, 8 ≤ 100ms, 2 ≤ 1s
	assert.InDelta(t, 10*0.5/0.9, histogramQuantile(from, to, "lag", 0.5), 1e-9, "the 45th of 90 in [0, 10ms]")
	assert.InDelta(t, 100, histogramQuantile(from, to, "lag", 0.98), 1e-9, "the 98th: the top of (10ms, 100ms]")
	assert.InDelta(t, 100+900*0.5, histogramQuantile(from, to, "lag", 0.99), 1e-9, "the 99th: half into (100ms, 1s]")
	assert.InDelta(t, 0.02, histogramAbove(from, to, "lag", 0.1), 1e-9)
	assert.InDelta(t, 0.10, histogramAbove(from, to, "lag", 0.01), 1e-9)

	late := histogramSample(t, [4]int{50, 50, 50, 60}) // 10 observations, all above 1s
	assert.InDelta(t, 1000, histogramQuantile(from, late, "lag", 0.99), 1e-9, "the highest finite bound")
	assert.Zero(t, histogramQuantile(from, from, "lag", 0.99), "no observations")
}
