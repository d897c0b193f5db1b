package bundles

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/decision"
	"governor.dev/governor/internal/warmstack"
	"governor.dev/governor/test/bundleserver"
)

// benchInput builds an input document for a shipped policy with n targets,
// shaped as the controller builds it, in violation so that the policy acts.
func benchInput(b *testing.B, policy string, n int) map[string]any {
	b.Helper()
	targets := map[string]any{}
	names := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("t%04d", i)
		if i == 0 {
			name = "web"
		}
		names[i] = name
		targets[name] = map[string]any{
			"kind": "Deployment", "namespace": "factory", "name": name, "replicas": 3,
			"bandwidth": map[string]any{"egress": "500M", "egress_bps": 500000000},
			"resources": map[string]any{"app": map[string]any{
				"requests": map[string]any{"cpu": "250m", "memory": "128Mi"}, "limits": map[string]any{},
				"cpu_millis": map[string]any{"requests": 250}, "memory_bytes": map[string]any{"requests": 134217728},
			}},
		}
	}
	in := map[string]any{
		"loop":    map[string]any{"name": "bench", "namespace": "factory", "kind": "Reactive", "state": "Running"},
		"time":    "2026-11-21T10:00:00.250Z",
		"time_ns": 1795255200250000000,
		"tick":    1204,
		"targets": targets,
		"state":   map[string]any{},
		"history": benchHistory(names),
	}
	switch policy {
	case "reactive":
		in["params"] = map[string]any{
			"monitor":    map[string]any{"cpu": map[string]any{"kind": "superior", "threshold": 80}, "memory": map[string]any{"kind": "superior", "threshold": 85}},
			"priorities": []any{"cpu", "memory"},
			"remedies": map[string]any{
				"cpu":    map[string]any{"target": "web", "scale": "replicas", "step": 1},
				"memory": map[string]any{"target": "web", "scale": "memory", "container": "app", "step": "64Mi"},
			},
		}
		in["metrics"] = map[string]any{"cpu": metric(91), "memory": metric(90)}
	case "bandwidth":
		in["params"] = map[string]any{"targets": names}
		in["metrics"] = map[string]any{"jitter": metric(3.1)}
		in["state"] = map[string]any{"ewma": 2.8}
	case "deliberative":
		in["loop"].(map[string]any)["kind"] = "Deliberative"
		in["params"] = map[string]any{"window": 10, "min_interval_seconds": 60}
		var history []any
		for i := range 20 {
			history = append(history, map[string]any{
				"time": fmt.Sprintf("2026-11-21T09:59:%02d.000Z", 30+i), "time_ns": 1795255170000000000 + int64(i)*1000000000, "tick": 1000 + i,
				"actions": []any{map[string]any{"target": "web", "metric": "cpu", "set": map[string]any{"replicas": 4}}},
				"applied": []any{map[string]any{"target": "web", "metric": "cpu", "set": map[string]any{"replicas": 4}}},
				"events":  []any{"High cpu", "High memory"},
			})
		}
		in["supervised"] = map[string]any{
			"loop":    map[string]any{"name": "scaling", "kind": "Reactive"},
			"params":  map[string]any{"priorities": []any{"cpu", "memory"}},
			"history": history,
		}
	}
	// Round-trip through JSON so numbers are json.Number, as the
	// controller and governor eval hand them over.
	data, err := json.Marshal(in)
	if err != nil {
		b.Fatal(err)
	}
	out, err := ReadInput(strings.NewReader(string(data)), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// benchHistory is a full status.history (the default limit, 20 ticks) of
// ticks that each acted on every target, as input.history shows it.
func benchHistory(targets []string) []any {
	var history []any
	for i := range 20 {
		var actions []any
		for _, t := range targets {
			actions = append(actions, map[string]any{"target": t, "metric": "jitter", "set": map[string]any{"egress": "400M"}, "reason": "jitter 3.1 ms over 2 ms"})
		}
		history = append(history, map[string]any{
			"time": fmt.Sprintf("2026-11-21T09:59:%02d.250Z", 40+i), "time_ns": 1795255180250000000 + int64(i)*1000000000, "tick": 1184 + i,
			"actions": actions, "applied": actions, "events": []any{"jitter 3.1 ms over 2 ms"}, "revision": "bench@1",
		})
	}
	return history
}

func metric(v float64) map[string]any {
	return map[string]any{"value": v, "age_seconds": 0.2, "stale": false}
}

func loadShipped(b *testing.B, policy string) *Revision {
	b.Helper()
	rev, err := Load(context.Background(), "../policies/"+policy)
	if err != nil {
		b.Fatal(err)
	}
	return rev
}

// BenchmarkDecide measures one decision of each shipped policy, end to end
// as the controller asks for it (input conversion, evaluation, contract
// check), with the query prepared once per revision ("prepared") and built
// and compiled for every decision ("unprepared").
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	for _, policy := range []string{"reactive", "bandwidth", "deliberative"} {
		rev := loadShipped(b, policy)
		path := "governor/" + policy + "/decision"
		for _, n := range []int{1, 10, 100} { // 100: the default --max-decision-actions
			input := benchInput(b, policy, n)
			res, err := rev.Decide(ctx, Request{Decision: path, Input: input})
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Decision.Actions)+len(res.Decision.Params) == 0 {
				b.Fatalf("%s with %d targets decided nothing: %v", policy, n, res.Raw)
			}
			b.Run(fmt.Sprintf("policy=%s/targets=%d/prepared", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rev.Decide(ctx, Request{Decision: path, Input: input}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			})
			b.Run(fmt.Sprintf("policy=%s/targets=%d/unprepared", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				query := "data.governor." + policy + ".decision"
				contract := decision.ContractFromInput(input, builtin.Actuators)
				for b.Loop() {
					rs, err := rego.New(rego.Query(query), rego.Compiler(rev.compiler), rego.Store(rev.store), rego.Input(input)).Eval(ctx)
					if err != nil || len(rs) == 0 {
						b.Fatal(err)
					}
					if _, problems := decision.Validate(rs[0].Expressions[0].Value, contract); len(problems) > 0 {
						b.Fatal(problems)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			})
		}
	}
}

// BenchmarkDecideParallel is many loops deciding on one engine at once.
func BenchmarkDecideParallel(b *testing.B) {
	ctx := context.Background()
	for _, policy := range []string{"reactive", "bandwidth"} {
		engine := NewEngine(loadShipped(b, policy))
		input := benchInput(b, policy, 100)
		path := "governor/" + policy + "/decision"
		b.Run(fmt.Sprintf("policy=%s/targets=100", policy), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := engine.Decide(ctx, Request{Decision: path, Input: input}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkDecideOnFreshStacks is a decision made on a goroutine of its
// own, as each of a controller's ticks was, against one made on a
// goroutine of a warmstack.Pool, where the controller's ticks run now: the
// fresh goroutine grows its stack by copying as OPA's recursion deepens.
func BenchmarkDecideOnFreshStacks(b *testing.B) {
	ctx := context.Background()
	rev := loadShipped(b, "bandwidth")
	req := Request{Decision: "governor/bandwidth/decision", Input: benchInput(b, "bandwidth", 10)}
	pool := warmstack.New(2) // one may still be on its way back to idle
	for _, c := range []struct {
		name string
		run  func(func())
	}{
		{"stack=fresh", func(f func()) { go f() }},
		{"stack=warm", func(f func()) {
			if !pool.TryRun(f) {
				b.Fatal("the pool's goroutine is busy")
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				done := make(chan error, 1)
				c.run(func() {
					_, err := rev.Decide(ctx, req)
					done <- err
				})
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGate measures the activation gate on each shipped bundle, as a
// downloaded revision goes through it: compile, the bundle's own Rego tests,
// prepare the decision, activate.
func BenchmarkGate(b *testing.B) {
	for _, policy := range []string{"reactive", "bandwidth", "deliberative"} {
		b.Run(policy, func(b *testing.B) {
			rev := loadShipped(b, policy)
			engine := NewEngine(rev)
			path := "governor/" + policy + "/decision"
			for b.Loop() {
				if _, err := Gate(context.Background(), policy, "bench", rev.Bundle(), engine, Checks{Decisions: []string{path}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionLogMask is the cost of logging one decision (OPA's
// plugin: the event, the mask and drop policies, the buffer) when every
// decision comes from the same revision, with and without a mask, and when
// successive decisions alternate between a masking bundle and one without
// (each hands OPA's plugin another compiler, and it prepares its queries
// again).
func BenchmarkDecisionLogMask(b *testing.B) {
	masked, err := Load(context.Background(), maskingBundle(b))
	require.NoError(b, err)
	plain, err := Load(context.Background(), "../policies/reactive")
	require.NoError(b, err)
	input := benchInput(b, "reactive", 10)
	input["secret"], input["token"], input["drop"] = "s3cret", "t0ken", false
	for _, c := range []struct {
		name string
		revs []*Revision
	}{
		{"unmasked", []*Revision{plain}},
		{"masked", []*Revision{masked}},
		{"alternating", []*Revision{plain, masked}},
	} {
		b.Run(c.name, func(b *testing.B) {
			reg := startDecisionLog(b, &bundleserver.DecisionLogs{}, 60)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- reg.Start(ctx) }()
			defer func() { cancel(); <-done }()
			i := 0
			for b.Loop() {
				rev := c.revs[i%len(c.revs)]
				i++
				if err := reg.LogDecision(ctx, Logged{Loop: "factory/bench", Tick: int64(i), Decision: "t/decision",
					Revision: rev, Input: input, Result: map[string]any{}, Time: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
