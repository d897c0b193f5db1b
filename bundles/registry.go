package bundles

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Registry is the set of bundles a controller knows, by name, each served
// by its own Engine.
type Registry struct {
	mu      sync.RWMutex
	engines map[string]*Engine
}

// LoadRegistry loads every bundle in dir: each subdirectory and each
// .tar.gz file is a bundle named after it. One bundle that does not load
// fails the whole call, naming it: a controller must not start with half
// of its policies.
func LoadRegistry(ctx context.Context, dir string) (*Registry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading bundles: %w", err)
	}
	r := &Registry{engines: map[string]*Engine{}}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(e.IsDir() || strings.HasSuffix(name, ".tar.gz")) {
			continue
		}
		rev, err := Load(ctx, filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if _, dup := r.engines[rev.Name()]; dup {
			return nil, fmt.Errorf("two bundles named %s in %s", rev.Name(), dir)
		}
		r.engines[rev.Name()] = NewEngine(rev)
	}
	if len(r.engines) == 0 {
		return nil, fmt.Errorf("no bundles in %s: want one subdirectory or .tar.gz per bundle", dir)
	}
	return r, nil
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
	names := make([]string, 0, len(r.engines))
	for n := range r.engines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
