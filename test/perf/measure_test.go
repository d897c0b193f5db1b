//go:build integration && linux

package perf

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux everywhere).
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user and system) a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is the first, utime the 12th, stime the 13th.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var total time.Duration
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += time.Duration(n) * clockTick
	}
	return total, nil
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// machineBusy is the CPU time all cores of the machine spent busy so far
// (anything but idle and iowait), from /proc/stat: every process counts,
// those of other users of the machine too.
func machineBusy() (time.Duration, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy time.Duration
	for i, f := range fields[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += time.Duration(n) * clockTick
	}
	return busy, nil
}

// components are the control plane's processes started by this benchmark
// (children of the test binary), by the names of their binaries.
func components() map[string]int {
	pids := map[string]int{}
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		exe, err := os.Readlink(filepath.Join(dir, "exe"))
		if err != nil {
			continue
		}
		pids[filepath.Base(exe)] = pid
	}
	return pids
}

// sample is what a measurement window starts and ends with.
type sample struct {
	at   time.Time
	cpu  map[string]time.Duration // by process: governor and the components
	busy time.Duration            // the whole machine
	// client is governor's /metrics, server the API server's.
	client, server metrics
}

// takeSample reads governor's and the components' CPU time, the machine's,
// governor's metrics (the API requests it sent: client-go's rest_client_*)
// and the API server's.
func takeSample(d *deployment, g *governor) (sample, error) {
	s := sample{at: time.Now(), cpu: map[string]time.Duration{}}
	pids := components()
	pids["governor"] = g.Cmd.Process.Pid
	for name, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return s, err
		}
		s.cpu[name] = t
	}
	var err error
	if s.busy, err = machineBusy(); err != nil {
		return s, err
	}
	code, body, err := g.Get("/metrics", d.metricsToken)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%d %s", code, body)
	}
	if err != nil {
		return s, fmt.Errorf("governor's /metrics: %w", err)
	}
	if s.client, err = parseMetrics(strings.NewReader(body)); err != nil {
		return s, fmt.Errorf("governor's /metrics: %w", err)
	}
	raw, err := d.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return s, fmt.Errorf("the API server's /metrics: %w", err)
	}
	if s.server, err = parseMetrics(bytes.NewReader(raw)); err != nil {
		return s, fmt.Errorf("the API server's /metrics: %w", err)
	}
	return s, nil
}

// metrics sums the series of a Prometheus metric whose labels have the
// values of match, by the value of label by ("" for one total). field is
// "value" for a counter, "gauge" for a gauge, "sum" or "count" for a
// histogram, "le" for a histogram's cumulative counts by upper bound
// (by is then ignored; "+Inf" is the count).
type metrics func(name, by string, match map[string]string, field string) map[string]float64

func parseMetrics(r io.Reader) (metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	return func(name, by string, match map[string]string, field string) map[string]float64 {
		out := map[string]float64{}
		for _, s := range families[name].GetMetric() {
			key, matched := "", 0
			for _, l := range s.GetLabel() {
				if l.GetName() == by {
					key = l.GetValue()
				}
				if want, ok := match[l.GetName()]; ok && want == l.GetValue() {
					matched++
				}
			}
			if matched < len(match) {
				continue
			}
			switch field {
			case "le":
				for _, b := range s.GetHistogram().GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) { // the text format lists it; it is the count
						out[strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)] += float64(b.GetCumulativeCount())
					}
				}
				out["+Inf"] += float64(s.GetHistogram().GetSampleCount())
			case "sum":
				out[key] += s.GetHistogram().GetSampleSum()
			case "count":
				out[key] += float64(s.GetHistogram().GetSampleCount())
			case "gauge":
				out[key] += s.GetGauge().GetValue()
			default:
				out[key] += s.GetCounter().GetValue()
			}
		}
		return out
	}, nil
}

// rate is how much a sum grew per second between two samples, by key.
func rate(from, to sample, get func(sample) map[string]float64) map[string]float64 {
	before, after := get(from), get(to)
	secs := to.at.Sub(from.at).Seconds()
	out := map[string]float64{}
	for k, v := range after {
		out[k] = (v - before[k]) / secs
	}
	return out
}

// meanMillis is the mean of a histogram's observations (in seconds) between
// two samples, in milliseconds, by key.
func meanMillis(from, to sample, get func(s sample, field string) map[string]float64) map[string]float64 {
	sums := rate(from, to, func(s sample) map[string]float64 { return get(s, "sum") })
	counts := rate(from, to, func(s sample) map[string]float64 { return get(s, "count") })
	out := map[string]float64{}
	for k, c := range counts {
		if c > 0 {
			out[k] = 1000 * sums[k] / c
		}
	}
	return out
}

// bucket is a histogram's bucket between two samples: its upper bound and
// how many observations were at or below it.
type bucket struct{ le, count float64 }

// buckets are a histogram of governor's between two samples, by bound.
func buckets(from, to sample, name string) []bucket {
	before, after := from.client(name, "", nil, "le"), to.client(name, "", nil, "le")
	var out []bucket
	for k, v := range after {
		le, err := strconv.ParseFloat(k, 64) // "+Inf" too
		if err != nil {
			continue
		}
		out = append(out, bucket{le, v - before[k]})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	return out
}

// histogramQuantile is the q-quantile of the observations (in seconds) of
// a histogram of governor's between two samples, in milliseconds,
// interpolated within its bucket as Prometheus's histogram_quantile does
// (the highest finite bound when it falls in the last bucket).
func histogramQuantile(from, to sample, name string, q float64) float64 {
	bs := buckets(from, to, name)
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0
	}
	rank := q * bs[len(bs)-1].count
	lower, below := 0.0, 0.0
	for i, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return 1000 * bs[max(i-1, 0)].le
			}
			return 1000 * (lower + (b.le-lower)*(rank-below)/(b.count-below))
		}
		lower, below = b.le, b.count
	}
	return 0
}

// histogramAbove is the share of the observations of a histogram of
// governor's between two samples above one of its bounds.
func histogramAbove(from, to sample, name string, bound float64) float64 {
	bs := buckets(from, to, name)
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0
	}
	for _, b := range bs {
		if b.le == bound {
			return 1 - b.count/bs[len(bs)-1].count
		}
	}
	return math.NaN()
}

// cores is the CPU a process used between two samples, in cores.
func cores(from, to sample, name string) float64 {
	return (to.cpu[name] - from.cpu[name]).Seconds() / to.at.Sub(from.at).Seconds()
}

// percentile of sorted durations, in milliseconds (nearest rank: the 99th
// of 100 for p 0.99).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := max(int(math.Ceil(p*float64(len(sorted))))-1, 0)
	return float64(sorted[i].Microseconds()) / 1000
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
