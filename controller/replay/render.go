package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/internal/plot"
)

// WriteTable prints one line per loop tick: time since the first tick,
// loop, tick, metrics, events, what was applied, and what the guard said.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "T+\tLOOP\tTICK\tMETRICS\tEVENTS\tAPPLIED\tGUARD / ERROR"); err != nil {
		return err
	}
	if len(rows) == 0 {
		return tw.Flush()
	}
	start := rows[0].Tick.Time
	for _, r := range rows {
		guardText := strings.Join(r.Entry.Guard, "; ")
		if r.Entry.Error != "" {
			guardText = r.Entry.Error
		}
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			seconds(r.Tick.Time.Sub(start)), r.Loop, r.Entry.Tick, metricsText(r.Tick),
			strings.Join(r.Entry.Events, ", "), appliedText(r), guardText); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func metricsText(t *Tick) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(t.Metrics)) {
		if v := t.Metrics[name].Value; v != nil {
			parts = append(parts, fmt.Sprintf("%s=%.4g", name, *v))
		} else {
			parts = append(parts, name+"=-")
		}
	}
	return strings.Join(parts, " ")
}

func appliedText(r Row) string {
	var parts []string
	for _, a := range r.Entry.Applied {
		parts = append(parts, a.Target+" "+string(a.Set.Raw))
	}
	if r.Entry.Params != nil {
		parts = append(parts, "params "+string(r.Entry.Params.Raw))
	}
	return strings.Join(parts, "; ")
}

// Plot draws the replay: the trace's metrics, the targets' bandwidth,
// replicas and cpu and memory requests as the loops left them, and the priority
// rank of each metric of loops that have priorities.
func Plot(path, title string, rows []Row) error {
	metrics := map[string]*plot.Series{}
	egress := map[string]*plot.Series{}
	replicaSeries := map[string]*plot.Series{}
	cpu := map[string]*plot.Series{}
	memory := map[string]*plot.Series{}
	ranks := map[string]*plot.Series{}
	add := func(m map[string]*plot.Series, name, unit string, step bool, t time.Time, v float64) {
		s, ok := m[name]
		if !ok {
			s = &plot.Series{Name: name, Unit: unit, Step: step}
			m[name] = s
		}
		s.Points = append(s.Points, plot.Point{T: t, V: v})
	}
	var last *Tick
	for _, r := range rows {
		t := r.Tick.Time
		if r.Tick != last {
			for name, m := range r.Tick.Metrics {
				if m.Value != nil {
					add(metrics, name, "", false, t, *m.Value)
				}
			}
			last = r.Tick
		}
		for name, tg := range r.Targets {
			if bw, _ := tg[bandwidth.Field].(bandwidth.Value); bw.Egress != nil {
				add(egress, r.Loop+"/"+name, "Mbit/s", true, t, bw.Egress.AsApproximateFloat64()/1e6)
			}
			if n, _ := tg[replicas.Field].(*int64); n != nil {
				add(replicaSeries, r.Loop+"/"+name, "", true, t, float64(*n))
			}
			containers, _ := tg[resources.Field].(resources.Containers)
			for c, res := range containers {
				if q, ok := res.Requests["cpu"]; ok {
					add(cpu, r.Loop+"/"+name+"/"+c, "m", true, t, float64(q.MilliValue()))
				}
				if q, ok := res.Requests["memory"]; ok {
					add(memory, r.Loop+"/"+name+"/"+c, "MiB", true, t, q.AsApproximateFloat64()/(1<<20))
				}
			}
		}
		for i, p := range r.Priorities {
			add(ranks, r.Loop+": "+p, "", true, t, float64(i+1))
		}
	}
	var panels []plot.Panel
	for _, p := range []struct {
		title, ylabel string
		series        map[string]*plot.Series
	}{
		{"Metrics", "value", metrics},
		{"Egress bandwidth", "Mbit/s", egress},
		{"Replicas", "replicas", replicaSeries},
		{"CPU requests", "millicores", cpu},
		{"Memory requests", "MiB", memory},
		{"Priority rank (1 = remedied first)", "rank", ranks},
	} {
		if len(p.series) == 0 {
			continue
		}
		panel := plot.Panel{Title: p.title, YLabel: p.ylabel}
		for _, name := range slices.Sorted(maps.Keys(p.series)) {
			panel.Series = append(panel.Series, *p.series[name])
		}
		panels = append(panels, panel)
	}
	return plot.WritePNG(path, title, panels)
}

// History is every row as a JSON record, for jsonl.Write.
func History(rows []Row) []any {
	out := make([]any, 0, len(rows))
	for _, r := range rows {
		raw, _ := json.Marshal(r.Entry)
		var entry map[string]any
		_ = json.Unmarshal(raw, &entry)
		entry["loop"] = r.Loop
		if r.Input != nil {
			entry["input"] = r.Input
		}
		if r.State != nil {
			entry["state"] = r.State
		}
		out = append(out, entry)
	}
	return out
}
