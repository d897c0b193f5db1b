package hubble

import (
	"math"
	"slices"
	"time"
)

// A sample is one flow kept in a stream's buffer: an HTTP response or a drop, 16 bytes.
type sample struct {
	at int64  // the flow's time, Unix nanoseconds
	v  uint64 // latency_ns<<2 | flags; latency 0 is unknown
}

const (
	flagDrop  = 1 // a flow with verdict DROPPED
	flagError = 2 // an HTTP response with status >= 500
	maxLatNs  = math.MaxUint64 >> 2
)

func (s sample) drop() bool      { return s.v&flagDrop != 0 }
func (s sample) err() bool       { return s.v&flagError != 0 }
func (s sample) latency() uint64 { return s.v >> 2 }

// chunkLen samples make a chunk (16 KiB): the buffer grows and shrinks a chunk at a time.
const chunkLen = 1024

type chunk [chunkLen]sample

// deque is a FIFO of samples in fixed-size chunks: pushing at the back and popping at the
// front cost O(1) and memory follows the length (at most one chunk unused, plus a spare).
type deque struct {
	chunks []*chunk
	head   int // index of the first sample in chunks[0]
	n      int
	spare  *chunk
}

func (d *deque) len() int { return d.n }

func (d *deque) push(s sample) {
	end := d.head + d.n
	if ci := end / chunkLen; ci == len(d.chunks) {
		c := d.spare
		d.spare = nil
		if c == nil {
			c = new(chunk)
		}
		d.chunks = append(d.chunks, c)
	}
	d.chunks[end/chunkLen][end%chunkLen] = s
	d.n++
}

func (d *deque) front() sample { return d.chunks[0][d.head] }

func (d *deque) at(i int) sample {
	p := d.head + i
	return d.chunks[p/chunkLen][p%chunkLen]
}

func (d *deque) pop() {
	d.head++
	d.n--
	switch {
	case d.n == 0:
		// Keep the first chunk for reuse, release the rest.
		for i := 1; i < len(d.chunks); i++ {
			d.chunks[i] = nil
		}
		d.chunks, d.head = d.chunks[:min(1, len(d.chunks))], 0
	case d.head == chunkLen:
		d.spare = d.chunks[0]
		copy(d.chunks, d.chunks[1:])
		d.chunks[len(d.chunks)-1] = nil
		d.chunks = d.chunks[:len(d.chunks)-1]
		d.head = 0
	}
}

// stats are a window's figures.
type stats struct {
	count     int     // responses with a latency
	responses int     // HTTP responses (for error_rate)
	errors    int     // responses with status >= 500
	drops     int     // DROPPED flows
	p50       float64 // ms
	p95       float64
	p99       float64
	mean      float64
	jitter    float64 // mean |l(i) - l(i-1)| over successive latencies, ms
}

// reorderSlack is how far out of time order flows may arrive (Hubble Relay sorts the flows
// of its nodes over about a second): a buffer keeps that much more than its longest window.
const reorderSlack = time.Second

// gather computes the counts, mean and jitter of the samples with cutoff < at (in arrival
// order), and appends their latencies to lats, for percentiles.
func gather(d *deque, cutoff int64, lats []uint64) (stats, []uint64) {
	var st stats
	var jsum, sum, prev uint64
	n0 := len(lats)
	stop := cutoff - int64(reorderSlack)
	for i := d.len() - 1; i >= 0; i-- { // newest first: |differences| are the same both ways
		s := d.at(i)
		if s.at <= cutoff {
			if s.at <= stop {
				break
			}
			continue
		}
		if s.drop() {
			st.drops++
			continue
		}
		st.responses++
		if s.err() {
			st.errors++
		}
		l := s.latency()
		if l == 0 {
			continue
		}
		if len(lats) > n0 {
			if l > prev {
				jsum += l - prev
			} else {
				jsum += prev - l
			}
		}
		prev = l
		sum += l
		lats = append(lats, l)
	}
	st.count = len(lats) - n0
	if st.count > 1 {
		st.jitter = float64(jsum) / float64(st.count-1) / 1e6
	}
	if st.count > 0 {
		st.mean = float64(sum) / float64(st.count) / 1e6
	}
	return st, lats
}

// percentiles sets p50, p95 and p99 from the window's latencies (sorted in place).
func (st *stats) percentiles(lats []uint64) {
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	st.p50 = percentile(lats, 0.50)
	st.p95 = percentile(lats, 0.95)
	st.p99 = percentile(lats, 0.99)
}

// percentile is the nearest-rank percentile of sorted latencies, in ms: the smallest value
// with at least q of the values at or below it.
func percentile(sorted []uint64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / 1e6
}
