package bundles

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Registry is the set of bundles a controller knows, by name, each served
// by its own Engine: bundles loaded from a directory at start, and bundles
// followed on a bundle server (their engines empty until a first revision
// passes the gate).
type Registry struct {
	mu      sync.RWMutex
	engines map[string]*Engine
	sources map[string]*Follower
	status  map[string]Status
	log     *DecisionLog
	// decisions lists the decision paths of the loops on a bundle, and
	// probes their last decisions.
	decisions func(ctx context.Context, bundle string) ([]string, error)
	probes    func(ctx context.Context, bundle string) ([]Probe, error)
	limits    Limits
}

// NewRegistry is an empty registry.
func NewRegistry() *Registry {
	return &Registry{engines: map[string]*Engine{}, sources: map[string]*Follower{}, status: map[string]Status{}}
}

// LoadRegistry is a registry of every bundle in dir (see AddDir).
func LoadRegistry(ctx context.Context, dir string) (*Registry, error) {
	r := NewRegistry()
	if err := r.AddDir(ctx, dir); err != nil {
		return nil, err
	}
	return r, nil
}

// AddDir loads every bundle in dir: each subdirectory and each .tar.gz
// file is a bundle named after it. One bundle that does not load fails the
// whole call, naming it, and adds nothing: a controller must not start with
// half of its policies.
func (r *Registry) AddDir(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading bundles: %w", err)
	}
	loaded := map[string]*Revision{}
	for _, e := range entries {
		name := e.Name()
		isBundle := e.IsDir() || strings.HasSuffix(name, ".tar.gz")
		if strings.HasPrefix(name, ".") || !isBundle {
			continue
		}
		path := filepath.Join(dir, name)
		rev, err := loadVerified(ctx, path, bundleName(path), path, nil, r.Limits())
		if err != nil {
			return err
		}
		// What a followed revision's gate checks at prepare.
		for _, d := range rev.Entrypoints() {
			if _, err := rev.Prepare(ctx, d); err != nil {
				return fmt.Errorf("bundle %s: declared entrypoint: %w", rev.Name(), err)
			}
		}
		if _, dup := loaded[rev.Name()]; dup {
			return fmt.Errorf("two bundles named %s in %s", rev.Name(), dir)
		}
		loaded[rev.Name()] = rev
	}
	if len(loaded) == 0 {
		return fmt.Errorf("no bundles in %s: want one subdirectory or .tar.gz per bundle", dir)
	}
	return r.add(loaded, " in "+dir)
}

// AddBundle loads one bundle directory or tarball, as AddDir loads each,
// under the given name: an author's working folder, say.
func (r *Registry) AddBundle(ctx context.Context, name, path string) error {
	rev, err := loadVerified(ctx, path, name, path, nil, r.Limits())
	if err != nil {
		return err
	}
	return r.add(map[string]*Revision{name: rev}, "")
}

// add registers loaded revisions, each with an engine; a name already known
// fails the call, and adds nothing.
func (r *Registry) add(loaded map[string]*Revision, from string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range loaded {
		if _, dup := r.engines[name]; dup {
			return fmt.Errorf("bundle %s%s is already known", name, from)
		}
	}
	now := time.Now()
	for name, rev := range loaded {
		r.engines[name] = NewEngine(rev)
		r.status[name] = Status{Name: name, Source: rev.source, ActiveRevision: rev.String(), LastActivation: now, Activations: 1}
		activeRevision.WithLabelValues(name, rev.Revision()).Set(1)
	}
	return nil
}

// AddSources registers the bundles of an OPA configuration, each with an
// engine that has no revision until Start follows it to one, and its
// decision log. A name that is already known fails the call, and adds
// nothing.
func (r *Registry) AddSources(cfg *Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, src := range cfg.Sources {
		if _, dup := r.engines[src.Name]; dup {
			return fmt.Errorf("bundle %s is configured twice (in --bundles and in the OPA configuration)", src.Name)
		}
	}
	r.log = cfg.DecisionLog
	hooks := Hooks{Decisions: r.decisionPaths, Probes: r.lastDecisions, OnStatus: r.setStatus, Limits: r.limits}
	for _, src := range cfg.Sources {
		engine := NewEmptyEngine(src.Name)
		f := NewFollower(src, engine, hooks)
		r.engines[src.Name], r.sources[src.Name], r.status[src.Name] = engine, f, f.Status()
	}
	return nil
}

// SetDecisionPaths gives the registry the decision paths the loops on each
// bundle use (see Hooks.Decisions): every new revision of a bundle that
// declares no entrypoints must prepare them before it goes live. Call it
// before Start.
func (r *Registry) SetDecisionPaths(paths func(ctx context.Context, bundle string) ([]string, error)) {
	r.mu.Lock()
	r.decisions = paths
	r.mu.Unlock()
}

// SetProbes gives the registry the loops' last decisions on each bundle
// (see Hooks.Probes): every new revision must make them again. Call it
// before Start.
func (r *Registry) SetProbes(probes func(ctx context.Context, bundle string) ([]Probe, error)) {
	r.mu.Lock()
	r.probes = probes
	r.mu.Unlock()
}

// SetLimits sets what bundles and decisions may take (see Limits). Call it
// before AddDir and AddSources.
func (r *Registry) SetLimits(l Limits) {
	r.mu.Lock()
	r.limits = l
	r.mu.Unlock()
}

// Limits are what bundles and decisions may take.
func (r *Registry) Limits() Limits {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.limits
}

// Start runs the decision log, if one is configured, and follows every
// configured source until ctx is done (see Follower.Run). Every replica follows,
// leader or not, so that a new leader decides with the newest revision at
// once. It fails at once if the decision log cannot start.
func (r *Registry) Start(ctx context.Context) error {
	r.mu.RLock()
	log, followers := r.log, slices.Collect(maps.Values(r.sources))
	r.mu.RUnlock()
	var wg sync.WaitGroup
	if log != nil {
		if err := log.start(ctx); err != nil {
			return fmt.Errorf("decision log: %w", err)
		}
		wg.Go(func() { log.stopWhenDone(ctx) })
	}
	for _, f := range followers {
		wg.Go(func() { f.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// LogsDecisions says whether decisions are logged: their whole input then is.
func (r *Registry) LogsDecisions() bool { return r.log != nil }

// LogDecision sends a decision to the decision log, if one is configured.
func (r *Registry) LogDecision(ctx context.Context, l Logged) error {
	if r.log == nil {
		return nil
	}
	return r.log.Log(ctx, l)
}

// NeedLeaderElection is false: see Start.
func (r *Registry) NeedLeaderElection() bool { return false }

// decisionPaths is Hooks.Decisions, through what SetDecisionPaths gave.
func (r *Registry) decisionPaths(ctx context.Context, bundle string) ([]string, error) {
	r.mu.RLock()
	paths := r.decisions
	r.mu.RUnlock()
	if paths == nil {
		return nil, nil
	}
	return paths(ctx, bundle)
}

// lastDecisions is Hooks.Probes, through what SetProbes gave.
func (r *Registry) lastDecisions(ctx context.Context, bundle string) ([]Probe, error) {
	r.mu.RLock()
	probes := r.probes
	r.mu.RUnlock()
	if probes == nil {
		return nil, nil
	}
	return probes(ctx, bundle)
}

func (r *Registry) setStatus(s Status) {
	r.mu.Lock()
	r.status[s.Name] = s
	r.mu.Unlock()
}

// Status is a bundle's status, by name.
func (r *Registry) Status(name string) (Status, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.status[name]
	return s, ok
}

// Followed is whether a bundle comes from a configured source (and so may
// fail to download), rather than from a directory at start.
func (r *Registry) Followed(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.sources[name]
	return ok
}

// Ready is nil once every bundle has an active revision; otherwise it
// names those still without one, and why.
func (r *Registry) Ready() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var waiting []string
	for _, name := range slices.Sorted(maps.Keys(r.engines)) {
		if r.engines[name].Active() == nil {
			why := "waiting for the first download"
			if err := r.status[name].LastError; err != nil {
				why = err.Error()
			}
			waiting = append(waiting, fmt.Sprintf("%s (%s)", name, why))
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("bundles without a revision: %s", strings.Join(waiting, "; "))
	}
	return nil
}

// Engine is the engine of a bundle, by name.
func (r *Registry) Engine(name string) (*Engine, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.engines[name]
	return e, ok
}

// Names are the known bundles' names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.engines))
}
