package controller

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
)

// listedVersions are the loops' resourceVersions as the API server listed
// them (their metadata only, one listing per namespace shared by the
// runners that ask meanwhile), for a runner to tell whether its cache
// holds a loop as the API server does, when the cache cannot say whether
// it has seen the version a view names (cacheHolds): a loop a live owner's
// view gave away had that owner's last writes land before the view, which
// comes by the Lease watch, while the cache, behind the loops' busier
// watch, may not hold them yet (a joining replica's first writes of 17 of its 136
// loops were refused so: BenchmarkShards, run L). A consistent listing of
// metadata, from the API server's watch cache, costs it far less than a
// read of each loop with its history (run L: 1.3 s on the average, for
// 161 loops).
type listedVersions struct {
	mu   sync.Mutex
	byNS map[string]*versionListing
}

type versionListing struct {
	started time.Time // before its request was sent
	done    chan struct{}
	names   map[string]string // loop → resourceVersion; set before done closes, nil if it failed
}

// of is the loop's resourceVersion in a listing sent after since, the
// last made if it was, else one made now (and shared with the calls that
// ask meanwhile); "" when the listing failed or did not have the loop.
func (v *listedVersions) of(ctx context.Context, api client.Reader, key types.NamespacedName, since time.Time) string {
	v.mu.Lock()
	l := v.byNS[key.Namespace]
	mine := l == nil || l.started.Before(since)
	if mine {
		l = &versionListing{started: time.Now(), done: make(chan struct{})}
		if v.byNS == nil {
			v.byNS = map[string]*versionListing{}
		}
		v.byNS[key.Namespace] = l
	}
	v.mu.Unlock()
	if mine {
		l.list(ctx, api, key.Namespace)
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return ""
	}
	return l.names[key.Name]
}

func (l *versionListing) list(ctx context.Context, api client.Reader, namespace string) {
	defer close(l.done)
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ControlLoopList"))
	if err := api.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return // the runner goes on from its cache: a refused first write reads the loop again
	}
	l.names = make(map[string]string, len(list.Items))
	for _, m := range list.Items {
		l.names[m.Name] = m.ResourceVersion
	}
}

// cacheCatchUp bounds how long a runner waits for the cache to see the
// version a view names before it lists the loops' versions instead.
const cacheCatchUp = time.Second

// cacheHolds says whether the cache holds every write of the loops that
// had landed by resourceVersion written (resourceVersions of one resource
// compare since Kubernetes 1.35, KEP-5504): the loop as cached is that
// recent, or the cache has seen that version (client-go's
// LastStoreSyncResourceVersion), which it waits for up to cacheCatchUp.
// False when it cannot tell: no version named (a view of an older
// replica), or a cache that does not say.
func (l *Loops) cacheHolds(ctx context.Context, loop *v1alpha1.ControlLoop, written string) bool {
	if written == "" {
		return false
	}
	if c, err := resourceversion.CompareResourceVersion(loop.ResourceVersion, written); err == nil && c >= 0 {
		return true
	}
	if l.CacheVersion == nil {
		return false
	}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, cacheCatchUp, true, func(context.Context) (bool, error) {
		c, err := resourceversion.CompareResourceVersion(l.CacheVersion(), written)
		return err == nil && c >= 0, err
	})
	return err == nil
}

// landedVersion is the highest resourceVersion this replica's status
// writes landed at.
type landedVersion struct {
	mu sync.Mutex
	rv string
}

func (v *landedVersion) landed(rv string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, err := resourceversion.CompareResourceVersion(rv, v.rv); v.rv == "" || (err == nil && c > 0) {
		v.rv = rv
	}
}

func (v *landedVersion) get() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rv
}
