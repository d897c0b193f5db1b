// Package sim simulates the plant Governor controls: the latency of a critical workload's
// HTTP traffic, as models (Plant) that the simulated Hubble Relay (sim/relay) draws the
// latency_ns of its synthetic L7 flows from. The demo, replay, tests and benchmarks use it.
//
// A plant's jitter is meant as Governor's Hubble collector measures it: the mean absolute
// difference of successive latencies. Latencies are drawn independently and uniformly from
// mean ± 1.5·jitter, whose expected mean absolute successive difference is exactly jitter
// (for X, Y uniform on an interval of width w, E|X−Y| = w/3). A draw below 1µs is raised to
// 1µs, so a jitter above mean/1.5 is lower than asked.
package sim

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Plant is a model of the latency of one workload's HTTP exchanges.
type Plant interface {
	// Latency draws the latency of one exchange that completes at now. r is the caller's
	// random source (the relay seeds one per route, so runs are repeatable); a plant keeps
	// none of its own. Latency may be called concurrently.
	Latency(now time.Time, r *rand.Rand) time.Duration
}

// minLatency is the least latency a plant returns: Hubble's latency_ns of 0 means "unknown".
const minLatency = time.Microsecond

// Draw returns a latency drawn uniformly from mean ± 1.5·jitter (never below 1µs): latencies
// drawn this way have a mean absolute successive difference of jitter. With jitter 0 it is
// mean, and r is not used.
func Draw(mean, jitter time.Duration, r *rand.Rand) time.Duration {
	d := mean
	if jitter > 0 {
		d += time.Duration((r.Float64()*2 - 1) * 1.5 * float64(jitter))
	}
	return max(d, minLatency)
}

// Scripted is a plant whose mean latency and jitter the caller sets at run time.
type Scripted struct {
	p atomic.Pointer[scripted]
}

type scripted struct{ mean, jitter time.Duration }

// NewScripted returns a scripted plant with the given mean latency and jitter.
func NewScripted(mean, jitter time.Duration) *Scripted {
	s := &Scripted{}
	s.SetLatency(mean, jitter)
	return s
}

// SetLatency changes the mean latency and the jitter from the next draw on.
func (s *Scripted) SetLatency(mean, jitter time.Duration) {
	s.p.Store(&scripted{mean: mean, jitter: jitter})
}

// Params returns the mean latency and jitter in force.
func (s *Scripted) Params() (mean, jitter time.Duration) {
	p := s.p.Load()
	return p.mean, p.jitter
}

// Latency implements Plant.
func (s *Scripted) Latency(_ time.Time, r *rand.Rand) time.Duration {
	p := s.p.Load()
	return Draw(p.mean, p.jitter, r)
}

// Sequence is a plant that returns the given latencies in turn, over and over, with no
// randomness: for tests that check statistics exactly.
type Sequence struct {
	lat []time.Duration
	i   atomic.Uint64
}

// NewSequence returns a plant that cycles through lat (which must not be empty).
func NewSequence(lat ...time.Duration) *Sequence {
	if len(lat) == 0 {
		panic("sim.NewSequence: no latencies")
	}
	return &Sequence{lat: append([]time.Duration(nil), lat...)}
}

// Latency implements Plant.
func (s *Sequence) Latency(time.Time, *rand.Rand) time.Duration {
	return s.lat[(s.i.Add(1)-1)%uint64(len(s.lat))]
}
