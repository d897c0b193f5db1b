package hubble

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/sim/relay"
	"governor.dev/governor/sim/relay/relaytest"
)

// BenchmarkIngest is the flows per second the collector ingests from a relay over gRPC on
// loopback, on one core (the in-process relay sending them shares it): HTTP response flows
// matching the stream's filter, each decoded and added to the window.
func BenchmarkIngest(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r := relaytest.Start(b, relay.Config{StreamBuffer: 4096})
	c := newCollector(b, Options{Address: r.Addr()})
	s := connected(b, c, toRobot)
	now := time.Now()
	flows := make([]*flowpb.Flow, 1024)
	for i := range flows {
		flows[i] = response(now.Add(time.Duration(i)*time.Microsecond), time.Duration(1+i%10)*time.Millisecond, 200)
	}
	const batch = 64
	start := s.receivedFlows()
	b.ResetTimer()
	t0 := time.Now()
	go func() {
		for i := 0; i < b.N; i += batch {
			n := min(batch, b.N-i)
			off := i % len(flows)
			if off+n > len(flows) {
				off = 0
			}
			r.Publish(flows[off : off+n]...)
		}
	}()
	for s.receivedFlows() < start+uint64(b.N) {
		time.Sleep(200 * time.Microsecond)
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "flows/s")
}

// BenchmarkIngestDecoded is the collector's own share of that: adding one decoded flow to
// a stream's window (no gRPC, no protobuf decoding).
func BenchmarkIngestDecoded(b *testing.B) {
	c := New(Options{Address: "127.0.0.1:1"})
	defer c.Close()
	req, _ := FlowsRequest(toRobot)
	s := newStream(c, req, 10*time.Second)
	base := time.Now()
	f := response(base, time.Millisecond, 200)
	ts := make([]*timestamppb.Timestamp, 1000)
	for i := range ts {
		ts[i] = timestamppb.New(base.Add(time.Duration(i) * time.Millisecond))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f.Time = ts[i%len(ts)]
		s.ingest(f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

// BenchmarkCollect is one tick's read of a full window: 1000 flows/s × 10s.
func BenchmarkCollect(b *testing.B) {
	c := New(Options{Address: "127.0.0.1:1"})
	defer c.Close()
	req, _ := FlowsRequest(toRobot)
	s := newStream(c, req, 10*time.Second)
	base := time.Now()
	f := response(base, time.Millisecond, 200)
	for i := range 10_000 {
		f.Time = timestamppb.New(base.Add(time.Duration(i) * time.Millisecond))
		f.L7.LatencyNs = uint64(1e6 + (i*7919)%5000*1000)
		s.ingest(f)
	}
	now := base.Add(9999 * time.Millisecond) // the window (now-10s, now] holds all 10,000
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if m := s.collect(10*time.Second, now); m.Fields["count"] != 10_000 {
			b.Fatalf("count %v", m.Fields["count"])
		}
	}
}

// BenchmarkMemoryPerWindow is the collector's memory per (filter, window) holding 10s of
// flows at 1000 flows/s: the heap in use after filling 50 streams' windows, over 50.
func BenchmarkMemoryPerWindow(b *testing.B) {
	const windows, perWindow = 50, 10_000
	c := New(Options{Address: "127.0.0.1:1"})
	defer c.Close()
	total := 0.0
	for range b.N {
		base := time.Now()
		f := response(base, time.Millisecond, 200)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		streams := make([]*stream, windows)
		for i := range streams {
			req, err := FlowsRequest(&v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: fmt.Sprint("w", i)}})
			if err != nil {
				b.Fatal(err)
			}
			s := newStream(c, req, 10*time.Second)
			s.read(10*time.Second, base)
			for j := range perWindow {
				f.Time = timestamppb.New(base.Add(time.Duration(j) * time.Millisecond))
				s.ingest(f)
			}
			streams[i] = s
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(after.HeapAlloc-before.HeapAlloc) / windows
		for _, s := range streams {
			if s.buf.len() != perWindow {
				b.Fatalf("%d samples", s.buf.len())
			}
			s.cancel()
		}
	}
	b.ReportMetric(total/float64(b.N), "B/window")
	b.ReportMetric(total/float64(b.N)/perWindow, "B/sample")
}

// BenchmarkMemoryPerStream is the heap a GetFlows stream costs while idle, collector and
// in-process relay together (gRPC buffers on both sides, the relay's queue of the stream):
// an upper bound of what a stream adds to the collector beyond its window.
func BenchmarkMemoryPerStream(b *testing.B) {
	const streams = 20
	r := relaytest.Start(b, relay.Config{})
	total := 0.0
	for range b.N {
		c := New(Options{Address: r.Addr(), Backoff: fast})
		connected(b, c, &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: "warm-up"}})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range streams {
			connected(b, c, &v1alpha1.HubbleCollector{Destination: &v1alpha1.FlowEndpoint{Workload: fmt.Sprint("w", i)}})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(after.HeapAlloc-before.HeapAlloc) / streams
		c.Close()
	}
	b.ReportMetric(total/float64(b.N), "B/stream")
}
