package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"governor.dev/governor/api/v1alpha1"
)

// Expectation is one line of an --expect file: what a tick of a loop must
// show. Tick (the loop's tick number, as the table's TICK column) or Time
// (a trace line's time) picks the tick; Loop is needed when the replay has
// several. Each field given must hold; those left out are not checked.
type Expectation struct {
	Tick *int64     `json:"tick,omitempty"`
	Time *time.Time `json:"time,omitempty"`
	Loop string     `json:"loop,omitempty"`
	// Targets are fields' values after the tick, by target name, as a
	// decision sets them: {"api": {"replicas": 6}}.
	Targets map[string]map[string]any `json:"targets,omitempty"`
	// Events are exactly the tick's events (any order); [] is none.
	Events *[]string `json:"events,omitempty"`
	// Actions are exactly the actions the guard let through (target and
	// set; metric and reason are not compared).
	Actions *[]ExpectedAction `json:"actions,omitempty"`
	// NoAction says the guard let nothing through.
	NoAction bool `json:"no_action,omitempty"`

	line string // "file:line", for failures
}

// ExpectedAction is an action an expectation names.
type ExpectedAction struct {
	Target string         `json:"target"`
	Set    map[string]any `json:"set"`
}

// ReadExpectations reads an --expect file: JSON lines, blank lines and
// lines starting with # ignored.
func ReadExpectations(r io.Reader, name string) ([]Expectation, error) {
	return readJSONLines(r, name, func(e *Expectation, at string) error {
		if (e.Tick == nil) == (e.Time == nil) {
			return errors.New("give exactly one of tick and time")
		}
		if e.NoAction && e.Actions != nil && len(*e.Actions) > 0 {
			return errors.New("no_action with actions cannot both hold")
		}
		e.line = at
		return nil
	})
}

// Failures are the replay's failures, one line each naming the tick: ticks
// that failed to decide or whose decision was rejected, then expectations
// that do not hold. None means the replay passes.
func Failures(rows []Row, expectations []Expectation) []string {
	var out []string
	for _, r := range rows {
		if r.Entry.Error != "" {
			out = append(out, fmt.Sprintf("%s: %s", where(r), r.Entry.Error))
		}
	}
	loops := map[string]bool{}
	for _, r := range rows {
		loops[r.Loop] = true
	}
	for _, e := range expectations {
		out = append(out, e.check(rows, len(loops))...)
	}
	return out
}

func where(r Row) string {
	return fmt.Sprintf("loop %s tick %d (%s)", r.Loop, r.Entry.Tick, r.Tick.Time.Format(time.RFC3339Nano))
}

func (e Expectation) check(rows []Row, loops int) []string {
	if e.Loop == "" && loops > 1 {
		return []string{e.line + ": the replay has several loops: name one with \"loop\""}
	}
	var found []Row
	for _, r := range rows {
		if (e.Loop == "" || r.Loop == e.Loop) &&
			(e.Tick != nil && r.Entry.Tick == *e.Tick || e.Time != nil && r.Tick.Time.Equal(*e.Time)) {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		return []string{e.line + ": no such tick in the replay"}
	}
	var out []string
	for _, r := range found {
		for _, problem := range e.problems(r) {
			out = append(out, fmt.Sprintf("%s: %s (expected at %s)", where(r), problem, e.line))
		}
	}
	return out
}

func (e Expectation) problems(r Row) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(e.Targets)) {
		current, ok := r.Targets[name]
		if !ok {
			out = append(out, fmt.Sprintf("no target %s", name))
			continue
		}
		for _, field := range slices.Sorted(maps.Keys(e.Targets[name])) {
			want, got := normal(e.Targets[name][field]), normal(current[field])
			if !reflect.DeepEqual(want, got) {
				out = append(out, fmt.Sprintf("%s.%s is %s, expected %s", name, field, text(got), text(want)))
			}
		}
	}
	if e.Events != nil {
		want, got := slices.Sorted(slices.Values(*e.Events)), slices.Sorted(slices.Values(r.Entry.Events))
		if !slices.Equal(want, got) {
			out = append(out, fmt.Sprintf("events are [%s], expected [%s]", strings.Join(got, ", "), strings.Join(want, ", ")))
		}
	}
	if e.NoAction && len(r.Entry.Applied) > 0 {
		out = append(out, fmt.Sprintf("applied %s, expected no action", actionsText(r.Entry.Applied)))
	}
	if e.Actions != nil {
		var want []any
		for _, a := range *e.Actions {
			want = append(want, normal(map[string]any{"target": a.Target, "set": a.Set}))
		}
		var got []any
		for _, a := range r.Entry.Applied {
			got = append(got, normal(map[string]any{"target": a.Target, "set": a.Set}))
		}
		if !sameElements(want, got) {
			out = append(out, fmt.Sprintf("applied %s, expected %s", actionsText(r.Entry.Applied), text(want)))
		}
	}
	return out
}

// normal is v as JSON decodes it, so that values of any Go type compare.
func normal(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func text(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func actionsText(actions []v1alpha1.Action) string {
	if len(actions) == 0 {
		return "nothing"
	}
	var parts []string
	for _, a := range actions {
		parts = append(parts, a.Target+" "+string(a.Set.Raw))
	}
	return strings.Join(parts, ", ")
}

func sameElements(want, got []any) bool {
	if len(want) != len(got) {
		return false
	}
	used := make([]bool, len(got))
next:
	for _, w := range want {
		for i, g := range got {
			if !used[i] && reflect.DeepEqual(w, g) {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}

// InputOf is the input document a loop's tick decided on.
func InputOf(rows []Row, loop string, tick int64) (map[string]any, error) {
	loops := map[string]bool{}
	for _, r := range rows {
		loops[r.Loop] = true
	}
	if loop == "" && len(loops) > 1 {
		return nil, fmt.Errorf("the replay has loops %s: name one with --input-of", strings.Join(slices.Sorted(maps.Keys(loops)), ", "))
	}
	for _, r := range rows {
		if (loop == "" || r.Loop == loop) && r.Entry.Tick == tick {
			if r.Input == nil {
				return nil, fmt.Errorf("%s had no input: %s", where(r), r.Entry.Error)
			}
			return r.Input, nil
		}
	}
	return nil, fmt.Errorf("no tick %d in the replay (%d rows)", tick, len(rows))
}
