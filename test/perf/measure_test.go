//go:build integration

package perf

import (
	"fmt"
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
	at       time.Time
	cpu      map[string]time.Duration // by process: governor and the components
	busy     time.Duration            // the whole machine
	requests map[string]float64       // governor's API requests so far, by method
}

// takeSample reads governor's and the components' CPU time, the machine's
// and the API requests governor has sent (rest_client_requests_total of its
// /metrics).
func takeSample(g *governor) (sample, error) {
	s := sample{at: time.Now(), cpu: map[string]time.Duration{}}
	pids := components()
	pids["governor"] = g.cmd.Process.Pid
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
	s.requests, err = restRequests("http://" + g.metrics + "/metrics")
	return s, err
}

// restRequests sums client-go's rest_client_requests_total by method.
func restRequests(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	f, ok := families["rest_client_requests_total"]
	if !ok {
		return nil, fmt.Errorf("%s has no rest_client_requests_total", url)
	}
	byMethod := map[string]float64{}
	for _, m := range f.GetMetric() {
		method := "?"
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" {
				method = l.GetValue()
			}
		}
		byMethod[method] += m.GetCounter().GetValue()
	}
	return byMethod, nil
}

// cores is the CPU a process used between two samples, in cores.
func cores(from, to sample, name string) float64 {
	return (to.cpu[name] - from.cpu[name]).Seconds() / to.at.Sub(from.at).Seconds()
}

// percentile of sorted durations, in milliseconds (nearest rank).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
