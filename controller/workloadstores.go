package controller

import (
	"context"
	"fmt"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/workload"
)

// WorkloadStores are the stores of a cache by kind of workload: a tick
// reads its targets' workloads there (workload.View), the cache's own
// objects as a Get from the cache reads them. A workload.Viewer; exported
// for the test that holds it to a real API server.
type WorkloadStores struct {
	cache  cache.Cache
	mu     sync.Mutex
	stores map[string]informerStore // by kind
}

// informerStore is an informer and its store; nil when it has none to give.
type informerStore struct {
	informer cache.Informer
	store    toolscache.Store
}

// NewWorkloadStores are c's stores of workloads.
func NewWorkloadStores(c cache.Cache) *WorkloadStores {
	return &WorkloadStores{cache: c, stores: map[string]informerStore{}}
}

// ViewWorkload is t's object in its kind's store; ok is false when there
// is no store to read yet (before the informer has synced, when its store
// may lack what exists) or at all (a cache of several namespaces, whose
// informers do not give theirs): a Get then waits for the sync, or says
// why it cannot read.
func (s *WorkloadStores) ViewWorkload(ctx context.Context, t workload.Ref) (client.Object, bool, error) {
	is := s.of(ctx, t)
	if is.store == nil || !is.informer.HasSynced() {
		return nil, false, nil
	}
	item, exists, err := is.store.GetByKey(toolscache.NewObjectName(t.Namespace, t.Name).String())
	switch {
	case err != nil:
		return nil, true, workload.WrapGet(t.String(), err)
	case !exists:
		return nil, true, &workload.NotFoundError{What: t.String()}
	}
	obj, ok := item.(client.Object)
	if !ok {
		return nil, true, fmt.Errorf("%s: the cache holds a %T", t, item)
	}
	return obj, true, nil
}

// of is the informer of t's kind and its store.
func (s *WorkloadStores) of(ctx context.Context, t workload.Ref) informerStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	if is, ok := s.stores[t.Kind]; ok {
		return is
	}
	obj, err := t.NewObject()
	if err != nil {
		return informerStore{}
	}
	inf, err := s.cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return informerStore{} // not kept: asked again at the next read
	}
	is := informerStore{informer: inf, store: storeOf(inf)}
	s.stores[t.Kind] = is
	return is
}

// storeOf is client-go's store behind an informer controller-runtime
// returns; nil when it does not give it (a cache of several namespaces).
func storeOf(inf cache.Informer) toolscache.Store {
	if s, ok := inf.(interface{ GetStore() toolscache.Store }); ok {
		return s.GetStore()
	}
	return nil
}
