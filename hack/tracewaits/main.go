// Command tracewaits reads an execution trace of governor
// (/debug/pprof/trace, with --pprof-bind-address) and says how long its
// loops' runners waited for a CPU once woken (a tick due, its decision
// done), and how many of the long waits fell in a garbage collector's mark
// phase: where the tick lag's tail comes from (README, Benchmarks).
//
//	go run ./hack/tracewaits governor.trace
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

// longWait is a wait counted as long, in milliseconds.
const longWait = 50

type span struct{ from, to trace.Time }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracewaits <trace file>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "tracewaits:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	r, err := trace.NewReader(f)
	if err != nil {
		return err
	}
	w := waits{runnable: map[trace.GoID]trace.Time{}, runner: map[trace.GoID]bool{}}
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		w.read(&ev)
	}
	if len(w.all) == 0 {
		return fmt.Errorf("%s: no wait of a loop's runner (not a trace of governor running loops?)", path)
	}
	w.report()
	return nil
}

// waits are the runners' waits for a CPU, and the GC mark phases, of a trace.
type waits struct {
	runnable    map[trace.GoID]trace.Time // a goroutine made runnable, since when
	runner      map[trace.GoID]bool       // a goroutine that stopped last in Loops.run
	all         []float64                 // ms
	long, marks []span
	markFrom    trace.Time
	whole       span
}

func (w *waits) read(ev *trace.Event) {
	if w.whole.from == 0 {
		w.whole.from = ev.Time()
	}
	w.whole.to = ev.Time()
	switch ev.Kind() {
	case trace.EventRangeBegin, trace.EventRangeActive:
		if isMark(ev.Range().Name) {
			w.markFrom = ev.Time()
		}
	case trace.EventRangeEnd:
		if isMark(ev.Range().Name) && w.markFrom != 0 {
			w.marks = append(w.marks, span{w.markFrom, ev.Time()})
			w.markFrom = 0
		}
	case trace.EventStateTransition:
		if st := ev.StateTransition(); st.Resource.Kind == trace.ResourceGoroutine {
			w.transition(ev, st)
		}
	}
}

func (w *waits) transition(ev *trace.Event, st trace.StateTransition) {
	id := st.Resource.Goroutine()
	from, to := st.Goroutine()
	if from == trace.GoRunning && to != trace.GoRunning {
		w.runner[id] = inLoopsRun(ev.Stack()) // preempted, or blocked
	}
	if to == trace.GoRunnable {
		w.runnable[id] = ev.Time()
	}
	if from == trace.GoRunnable && to == trace.GoRunning && w.runner[id] && w.runnable[id] != 0 {
		s := span{w.runnable[id], ev.Time()}
		w.all = append(w.all, ms(s))
		if ms(s) > longWait {
			w.long = append(w.long, s)
		}
	}
}

func (w *waits) report() {
	slices.Sort(w.all)
	q := func(p float64) float64 { return w.all[int(p*float64(len(w.all)-1))] }
	var marking float64
	for _, m := range w.marks {
		marking += ms(m)
	}
	inMark := 0
	for _, l := range w.long {
		if slices.ContainsFunc(w.marks, func(m span) bool { return l.from < m.to && m.from < l.to }) {
			inMark++
		}
	}
	fmt.Printf("trace of %.1f s: %d waits of a runner for a CPU, p50 %.2f ms, p99 %.1f ms, max %.1f ms; %d over %d ms\n",
		ms(w.whole)/1000, len(w.all), q(0.5), q(0.99), w.all[len(w.all)-1], len(w.long), longWait)
	fmt.Printf("GC mark phases: %d, %.1f %% of the trace; waits over %d ms during one: %d of %d\n",
		len(w.marks), 100*marking/ms(w.whole), longWait, inMark, len(w.long))
}

func isMark(name string) bool { return strings.HasPrefix(name, "GC concurrent mark phase") }

// inLoopsRun says whether a goroutine blocked in a loop's runner.
func inLoopsRun(s trace.Stack) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, "controller.(*Loops).run") {
			return true
		}
	}
	return false
}

func ms(s span) float64 { return float64(s.to-s.from) / 1e6 }
