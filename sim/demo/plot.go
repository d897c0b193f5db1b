package demo

import (
	"fmt"
	"math"
	"slices"

	"governor.dev/governor/internal/plot"
)

// panels are the report's plot: what the bandwidth loop sees and grants, and how the
// deliberative loop reranks the reactive loop's priorities and what the reactive loop then
// changes.
func (r *recorder) panels() []plot.Panel {
	var plant, seen, target []plot.Point
	egress := map[string][]plot.Point{}
	var cpuRank, memRank, replicas, memory []plot.Point
	for _, s := range r.samples {
		plant = append(plant, plot.Point{T: s.T, V: s.PlantJitter})
		seen = append(seen, plot.Point{T: s.T, V: s.SeenJitter}) // NaN before the first decision: left out
		for _, name := range []string{Telemetry, Video} {
			egress[name] = append(egress[name], plot.Point{T: s.T, V: s.Egress[name]})
		}
		cpuRank = append(cpuRank, plot.Point{T: s.T, V: rank(s.Priorities, "cpu")})
		memRank = append(memRank, plot.Point{T: s.T, V: rank(s.Priorities, "memory")})
		if s.Err == "" {
			replicas = append(replicas, plot.Point{T: s.T, V: float64(s.WebReplicas)})
			memory = append(memory, plot.Point{T: s.T, V: s.WebMemRequest.AsApproximateFloat64() / (1 << 20)})
		}
	}
	if len(r.samples) > 0 {
		first, last := r.samples[0].T, r.samples[len(r.samples)-1].T
		target = []plot.Point{{T: first, V: targetJitter}, {T: last, V: targetJitter}}
	}
	return []plot.Panel{
		{Title: "Jitter of robot-control's traffic: factory-qos brings it under target", YLabel: "jitter (ms)", Series: []plot.Series{
			{Name: "jitter (plant)", Unit: "ms", Points: plant},
			{Name: "jitter seen by factory-qos (EWMA)", Unit: "ms", Points: seen},
			{Name: fmt.Sprintf("target %g ms", targetJitter), Unit: "ms", Points: target, Step: true},
		}},
		{Title: "Egress bandwidth factory-qos grants each best-effort Pod", YLabel: "Mbit/s per Pod", Series: []plot.Series{
			{Name: Telemetry, Unit: "Mbit/s", Points: egress[Telemetry], Step: true},
			{Name: Video, Unit: "Mbit/s", Points: egress[Video], Step: true},
		}},
		{Title: "Priorities of factory-scaling, as factory-priorities rewrites them", YLabel: "rank (1 = remedied first)", Series: []plot.Series{
			{Name: "cpu", Points: cpuRank, Step: true},
			{Name: "memory", Points: memRank, Step: true},
		}},
		{Title: "web replicas: factory-scaling's remedy for cpu (bounds 1-10)", YLabel: "replicas", Series: []plot.Series{
			{Name: "web replicas", Points: replicas, Step: true},
		}},
		{Title: "web memory request: factory-scaling's remedy for memory (bounds 64Mi-1Gi)", YLabel: "MiB", Series: []plot.Series{
			{Name: "web app memory request", Unit: "MiB", Points: memory, Step: true},
		}},
	}
}

// rank is m's 1-based rank in priorities, NaN when absent.
func rank(priorities []string, m string) float64 {
	if i := slices.Index(priorities, m); i >= 0 {
		return float64(i + 1)
	}
	return math.NaN()
}
