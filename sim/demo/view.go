package demo

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"governor.dev/governor/api/v1alpha1"
)

// view shows the demo's progress: on a terminal a block redrawn in place, otherwise a line
// per change and a status line now and then.
type view struct {
	out           io.Writer
	live          bool
	width, height int // of the terminal, when known: the block is cut to fit (live)

	kubeconfig string
	duration   time.Duration
	start      time.Time

	drawn      int // lines of the block on screen
	shown      int // notes printed (lines)
	lastStatus time.Time
}

// statusEvery is how often the line mode prints a status line.
const statusEvery = 10 * time.Second

// recentNotes is how many of the last changes the live block lists.
const recentNotes = 6

// render shows the state after a poll.
func (v *view) render(r *recorder, s sample, now time.Time, clusterErr error) {
	if v.live {
		lines := v.block(r, s, now, clusterErr)
		if v.height > 1 && len(lines) >= v.height {
			// Taller than the terminal, the block could not be redrawn in place.
			lines = lines[:v.height-1]
		}
		var b strings.Builder
		if v.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA\x1b[J", v.drawn) // up to the block's first line, clear below
		}
		for _, l := range lines {
			b.WriteString(v.fit(l))
			b.WriteByte('\n')
		}
		v.write(b.String())
		v.drawn = len(lines)
		v.shown = len(r.notes)
		return
	}
	var b strings.Builder
	for _, n := range r.notes[v.shown:] {
		fmt.Fprintf(&b, "%s  %s\n", v.clock(n.T), n.Text)
	}
	v.shown = len(r.notes)
	if now.Sub(v.lastStatus) >= statusEvery {
		fmt.Fprintf(&b, "%s  %s\n", v.clock(now), statusLine(s))
		v.lastStatus = now
	}
	if clusterErr != nil {
		fmt.Fprintf(&b, "%s  cluster: %v\n", v.clock(now), clusterErr)
	}
	v.write(b.String())
}

// line prints a line outside the block (before it starts, or after it ends).
func (v *view) line(format string, args ...any) {
	v.write(fmt.Sprintf(format+"\n", args...))
}

// write writes text to the output in one write. Its error is ignored on purpose: the view
// only shows progress, and an output gone bad (a closed terminal or pipe) must not stop the
// demo, whose results are in the report and the logs.
func (v *view) write(text string) {
	if text != "" {
		_, _ = io.WriteString(v.out, text)
	}
}

// end leaves the block on screen and lets what follows print below it.
func (v *view) end() { v.drawn = 0 }

// clock is the time since the loops started, m:ss.s.
func (v *view) clock(t time.Time) string {
	d := max(t.Sub(v.start), 0) // a first tick may come a moment before the last loop exists
	m := int(d / time.Minute)
	sec := (d % time.Minute).Seconds()
	return fmt.Sprintf("%d:%04.1f", m, sec)
}

func (v *view) fit(line string) string {
	if v.width < 20 || utf8.RuneCountInString(line) < v.width {
		return line
	}
	r := []rune(line)
	return string(r[:v.width-2]) + "…"
}

// statusLine is the state in one line.
func statusLine(s sample) string {
	return fmt.Sprintf("jitter %s ms · egress %s · web %d replicas, memory %s · priorities %s",
		num(s.PlantJitter, 2), egressSummary(s), s.WebReplicas, s.WebMemRequest.String(), list(s.Priorities))
}

func egressSummary(s sample) string {
	var parts []string
	for _, name := range []string{Telemetry, Video} {
		parts = append(parts, fmt.Sprintf("%s %s×%d", name, mbits(s.Egress[name]), s.Pods[name]))
	}
	return strings.Join(parts, ", ")
}

// block is the live view.
func (v *view) block(r *recorder, s sample, now time.Time, clusterErr error) []string {
	out := v.header(s, now, clusterErr)
	out = append(out, "")
	for _, name := range Loops {
		out = append(out, loopLines(r, name, s, now)...)
	}
	out = append(out, "", "recent changes")
	return append(out, v.recent(r)...)
}

// header is the block's top: the run's time, the cluster, the plant, the best-effort
// workloads and the web tier.
func (v *view) header(s sample, now time.Time, clusterErr error) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	elapsed := fmtDuration(now.Sub(v.start))
	if v.duration > 0 {
		elapsed += " of " + fmtDuration(v.duration)
	}
	add("governor demo · %s · Ctrl-C ends it and writes the report", elapsed)
	pods := 0
	for _, n := range s.Pods {
		pods += n
	}
	add("cluster   %d Pods Running on kwok Nodes · kubectl --kubeconfig %s -n %s get loops", pods, v.kubeconfig, Namespace)
	if clusterErr != nil {
		add("          %v", clusterErr)
	}
	if s.Err != "" {
		add("          reading the API server: %s", s.Err)
	}
	add("plant     robot-control jitter %s ms (target %s ms) · best-effort egress %s of %s Mbit/s on the link",
		num(s.PlantJitter, 2), num(targetJitter, 1), num(s.LinkEgress, 0), num(linkCapacity/1e6, 0))
	add("egress    %s: %s per Pod × %d · %s: %s per Pod × %d", Telemetry, mbits(s.Egress[Telemetry]), s.Pods[Telemetry],
		Video, mbits(s.Egress[Video]), s.Pods[Video])
	add("web       %d replicas (%d Running) · app memory %s request, %s limit · load cpu %s %%, memory %s %%",
		s.WebReplicas, s.Pods[Web], s.WebMemRequest.String(), s.WebMemLimit.String(), num(s.CPU, 1), num(s.Memory, 1))
	return out
}

// loopLines are a loop's lines of the block: what it is, sees, decides and changed.
func loopLines(r *recorder, name string, s sample, now time.Time) []string {
	l := r.loops[name]
	if l == nil {
		return []string{fmt.Sprintf("%-19s not created yet", name)}
	}
	entries := r.entries(name)
	decides := "-"
	if len(entries) > 0 {
		last := entries[len(entries)-1]
		if last.Error != "" {
			decides = "error: " + last.Error
		} else {
			decides = decision(last)
		}
	}
	return []string{
		loopHead(l, s),
		"  sees     " + sees(name, s, r),
		"  decides  " + decides,
		"  changed  " + changed(name, entries, now),
	}
}

// loopHead is a loop's first line: name, kind, tick, phase, revision, and its priorities
// (factory-scaling) or the loop it supervises (factory-priorities).
func loopHead(l *v1alpha1.ControlLoop, s sample) string {
	head := fmt.Sprintf("%-19s %s · tick %d · %s", l.Name, l.Spec.Kind, l.Status.Tick, orDash(string(l.Status.Phase)))
	if rev := l.Status.PolicyRevision; rev != "" {
		head += " · " + rev
	}
	switch l.Name {
	case LoopScaling:
		head += " · priorities " + list(s.Priorities)
		if s.OverridesBy != "" {
			head += " (set by " + s.OverridesBy + ")"
		}
	case LoopPriorities:
		head += " · supervises " + l.Spec.Supervises
	}
	return head
}

// recent lists the last recentNotes changes, padded to recentNotes lines.
func (v *view) recent(r *recorder) []string {
	notes := r.notes
	if len(notes) > recentNotes {
		notes = notes[len(notes)-recentNotes:]
	}
	var out []string
	for _, n := range notes {
		out = append(out, fmt.Sprintf("  %s  %s", v.clock(n.T), n.Text))
	}
	for range recentNotes - len(notes) {
		out = append(out, "")
	}
	return out
}

// sees is what a loop decides on.
func sees(loop string, s sample, r *recorder) string {
	switch loop {
	case LoopQoS:
		return fmt.Sprintf("jitter %s ms (smoothed, from Hubble flows to %s)", num(s.SeenJitter, 2), Critical)
	case LoopScaling:
		return fmt.Sprintf("cpu %s %% (threshold %d) · memory %s %% (threshold %d)", num(s.CPU, 1), cpuThreshold, num(s.Memory, 1), memoryThreshold)
	case LoopPriorities:
		var metrics []string
		entries := r.entries(LoopScaling)
		for i := len(entries) - 1; i >= 0 && len(metrics) < window; i-- {
			for _, a := range entries[i].Actions {
				metrics = append(metrics, a.Metric)
			}
		}
		if len(metrics) == 0 {
			return LoopScaling + "'s history: no action yet"
		}
		counts := map[string]int{}
		for _, m := range metrics {
			counts[m]++
		}
		var parts []string
		for _, m := range slices.Sorted(maps.Keys(counts)) {
			parts = append(parts, fmt.Sprintf("%s ×%d", orDash(m), counts[m]))
		}
		return fmt.Sprintf("%s's last %d actions remedied %s", LoopScaling, len(metrics), strings.Join(parts, ", "))
	}
	return ""
}

// changed counts a loop's changes and describes the last.
func changed(loop string, entries []v1alpha1.HistoryEntry, now time.Time) string {
	n := 0
	var last *v1alpha1.HistoryEntry
	for i := range entries {
		if len(entries[i].Applied) > 0 || paramsOf(entries[i]) != "" {
			n++
			last = &entries[i]
		}
	}
	if last == nil {
		return "nothing yet"
	}
	what := actions(last.Applied)
	if p := paramsOf(*last); p != "" {
		what = LoopScaling + "'s " + p
	}
	changes := "changes"
	if n == 1 {
		changes = "change"
	}
	return fmt.Sprintf("%d %s in %d ticks · last %s ago: %s", n, changes, len(entries), fmtDuration(now.Sub(last.Time.Time)), what)
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%d:%02d", int(d/time.Minute), int((d%time.Minute)/time.Second))
}

func num(v float64, decimals int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}

func mbits(v float64) string {
	if math.IsNaN(v) {
		return "unset"
	}
	return fmt.Sprintf("%gM", math.Round(v))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
