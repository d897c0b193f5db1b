package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/util"
)

// DecisionLog sends decisions to OPA's decision log plugin, as the
// decision_logs section of the OPA configuration sets it up: to the
// console, to a service (batched, gzipped, with OPA's retries and buffer
// limits), or both. The events are OPA's own, so existing decision log
// services take them as they are. A bundle's mask and drop policies
// (data.system.log.mask and data.system.log.drop, unless configured
// elsewhere) mask and drop the events of the decisions its revisions make,
// as OPA's plugin does them.
type DecisionLog struct {
	manager *plugins.Manager
	plugin  *logs.Plugin
	// mu serialises Log: OPA's plugin evaluates the mask and drop policies
	// with its manager's one compiler, which Log sets to that of the
	// revision that decided (masking is its revision's). masking is that
	// compiler; unmasked the manager's own, which has no policy.
	mu                sync.Mutex
	masking, unmasked *ast.Compiler
	// policies are the mask and drop policies' refs (OPA's defaults, or
	// decision_logs' mask_decision and drop_decision).
	policies []ast.Ref
	// started is closed once start has initialized the plugin manager and
	// started the plugin. Log waits for it: a decision logged while
	// Manager.Init commits its store deadlocks in OPA's logs plugin (the
	// commit's trigger drops the plugin's prepared mask query, under the
	// store's write lock, while Log prepares it, under the query cache's
	// lock, in a transaction of its own).
	started chan struct{}
}

// newDecisionLog is the decision log of an OPA configuration, nil when it
// has no decision_logs section. Its buffer holds at most bufferBytes (see
// boundBuffer).
func newDecisionLog(m *plugins.Manager, bufferBytes int64) (*DecisionLog, error) {
	if m.Config.DecisionLogs == nil {
		return nil, nil
	}
	raw, err := boundBuffer(m.Config.DecisionLogs, bufferBytes)
	if err != nil {
		return nil, err
	}
	trigger := plugins.TriggerPeriodic
	cfg, err := logs.NewConfigBuilder().
		WithBytes(raw).
		WithServices(m.Services()).
		WithTriggerMode(&trigger).
		Parse()
	if err != nil {
		return nil, err
	}
	var policies []ast.Ref
	for _, p := range []*string{cfg.MaskDecision, cfg.DropDecision} {
		path, _ := storage.ParsePath(util.WithPrefix(*p, "/")) // set and checked by Parse
		policies = append(policies, path.Ref(ast.DefaultRootDocument))
	}
	return &DecisionLog{manager: m, plugin: logs.New(cfg, m), started: make(chan struct{}), policies: policies}, nil
}

// boundBuffer sets the decision log's reporting.buffer_size_limit_bytes
// to limit, or keeps the configuration's when smaller: OPA's default buffer
// is unbounded, and grows without end while the service is down. Settings
// that bound the buffer otherwise (in events, or by a rate) are refused.
func boundBuffer(raw []byte, limit int64) ([]byte, error) {
	var cfg map[string]any
	if err := util.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	reporting, _ := cfg["reporting"].(map[string]any)
	if reporting == nil {
		reporting = map[string]any{}
	}
	if t, ok := reporting["buffer_type"]; ok && t != "size" {
		return nil, fmt.Errorf("reporting.buffer_type %v is not supported: governor bounds the buffer in bytes (--decision-log-buffer-bytes)", t)
	}
	if _, ok := reporting["max_decisions_per_second"]; ok {
		return nil, errors.New("reporting.max_decisions_per_second is not supported: governor bounds the buffer in bytes (--decision-log-buffer-bytes)")
	}
	if given, ok := reporting["buffer_size_limit_bytes"].(json.Number); ok {
		if n, err := given.Int64(); err == nil && n > 0 {
			limit = min(limit, n)
		}
	}
	reporting["buffer_size_limit_bytes"] = limit
	cfg["reporting"] = reporting
	return json.Marshal(cfg)
}

// start starts the decision log.
func (d *DecisionLog) start(ctx context.Context) error {
	if err := d.manager.Init(ctx); err != nil {
		return err
	}
	if err := d.plugin.Start(ctx); err != nil {
		return err
	}
	d.unmasked = d.manager.GetCompiler()
	d.masking = d.unmasked
	close(d.started)
	return nil
}

// stopWhenDone waits for ctx to be done, then stops the decision log,
// flushing what it holds to its service (for a few seconds at most).
func (d *DecisionLog) stopWhenDone(ctx context.Context) {
	<-ctx.Done()
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.plugin.Stop(flush)
}

// Logged is one decision, for the decision log.
type Logged struct {
	// Loop is the loop that decided, "namespace/name", and Tick its tick.
	Loop string
	Tick int64
	// Decision is the decision's path; Revision the revision that ran it.
	Decision string
	Revision *Revision
	Input    map[string]any
	// Result is the policy's output; nil when Err is set.
	Result any
	Err    error
	Time   time.Time
}

// Log records a decision. It does not block on the service: OPA's plugin
// buffers events and uploads them in the background. Before the decision log
// has started (Registry.Start), it waits for it, or for ctx.
func (d *DecisionLog) Log(ctx context.Context, l Logged) error {
	select {
	case <-d.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	masks, err := d.maskWith(ctx, l.Revision)
	if err != nil {
		return err
	}
	input := any(l.Input)
	if masks {
		// OPA's mask edits the event's input in place: the decision's own
		// input (status.lastInput, the gate's probes) must not lose what
		// the log may not see.
		input = copyDoc(l.Input)
	}
	info := &server.Info{
		DecisionID: uuid.NewString(),
		Path:       l.Decision,
		Input:      &input,
		Timestamp:  l.Time,
		Error:      l.Err,
		Custom:     map[string]any{"loop": l.Loop, "tick": l.Tick},
	}
	if l.Revision != nil {
		info.Bundles = map[string]server.BundleInfo{l.Revision.Name(): {Revision: l.Revision.Revision()}}
	}
	if l.Err == nil {
		info.Results = &l.Result
	}
	return d.plugin.Log(ctx, info)
}

// copyDoc copies the objects and arrays of a JSON document; its other
// values are immutable.
func copyDoc(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = copyDoc(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyDoc(e)
		}
		return out
	}
	return v
}

// maskWith makes OPA's plugin mask (and drop) with rev's policies, or with
// none when rev has none. The plugin manager takes a new compiler from a
// store commit that carries it (as OPA's bundle plugin hands over a
// compiler); its trigger drops the plugin's prepared mask and drop queries.
// d.mu is held, so no Log is preparing them meanwhile. It says whether
// rev's policies mask.
func (d *DecisionLog) maskWith(ctx context.Context, rev *Revision) (bool, error) {
	want := d.unmasked
	if rev != nil && slices.ContainsFunc(d.policies, func(p ast.Ref) bool { return len(rev.compiler.GetRulesWithPrefix(p)) > 0 }) {
		want = rev.compiler
	}
	masks := want != d.unmasked
	if want == d.masking {
		return masks, nil
	}
	params := storage.TransactionParams{Write: true, Context: storage.NewContext()}
	plugins.SetCompilerOnContext(params.Context, want)
	if err := storage.Txn(ctx, d.manager.Store, params, func(storage.Transaction) error { return nil }); err != nil {
		return false, fmt.Errorf("decision log: masking with %s: %w", rev, err)
	}
	d.masking = want
	return masks, nil
}
