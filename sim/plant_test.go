package sim_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/sim"
)

// meanAbsDiff is the jitter as Governor's Hubble collector measures it, in ms.
func meanAbsDiff(lat []time.Duration) float64 {
	sum := 0.0
	for i := 1; i < len(lat); i++ {
		sum += math.Abs(float64(lat[i] - lat[i-1]))
	}
	return sum / float64(len(lat)-1) / 1e6
}

func meanMs(lat []time.Duration) float64 {
	sum := 0.0
	for _, l := range lat {
		sum += float64(l)
	}
	return sum / float64(len(lat)) / 1e6
}

func TestDrawHasTheMeanAndJitterAsked(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ mean, jitter time.Duration }{
		{10 * time.Millisecond, 2 * time.Millisecond},
		{5 * time.Millisecond, 500 * time.Microsecond},
		{20 * time.Millisecond, 10 * time.Millisecond},
	} {
		lat := make([]time.Duration, 200_000)
		lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
		for i := range lat {
			lat[i] = sim.Draw(c.mean, c.jitter, r)
			lo, hi = min(lo, lat[i]), max(hi, lat[i])
		}
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		assert.InEpsilon(t, ms(c.mean), meanMs(lat), 0.01, "mean of %v±%v", c.mean, c.jitter)
		assert.InEpsilon(t, ms(c.jitter), meanAbsDiff(lat), 0.01, "jitter of %v±%v", c.mean, c.jitter)
		assert.GreaterOrEqual(t, lo, c.mean-c.jitter*3/2)
		assert.LessOrEqual(t, hi, c.mean+c.jitter*3/2)
	}
	assert.Equal(t, 7*time.Millisecond, sim.Draw(7*time.Millisecond, 0, nil), "no jitter: the mean, no randomness")
	assert.Equal(t, time.Microsecond, sim.Draw(0, 0, nil), "never below 1µs (0 is Hubble's unknown)")
}

func TestScriptedFollowsSetLatency(t *testing.T) {
	p := sim.NewScripted(3*time.Millisecond, 0)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		require.Equal(t, 3*time.Millisecond, p.Latency(time.Now(), r))
	}
	p.SetLatency(8*time.Millisecond, time.Millisecond)
	mean, jitter := p.Params()
	assert.Equal(t, 8*time.Millisecond, mean)
	assert.Equal(t, time.Millisecond, jitter)
	lat := make([]time.Duration, 50_000)
	for i := range lat {
		lat[i] = p.Latency(time.Now(), r)
	}
	assert.InEpsilon(t, 8.0, meanMs(lat), 0.01)
	assert.InEpsilon(t, 1.0, meanAbsDiff(lat), 0.02)
}

func TestSequenceCycles(t *testing.T) {
	p := sim.NewSequence(1*time.Millisecond, 3*time.Millisecond, 2*time.Millisecond)
	var got []time.Duration
	for range 7 {
		got = append(got, p.Latency(time.Time{}, nil))
	}
	assert.Equal(t, []time.Duration{1e6, 3e6, 2e6, 1e6, 3e6, 2e6, 1e6}, got)
}
