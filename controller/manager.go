package controller

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/collectors/hubble"
	"governor.dev/governor/collectors/prometheus"
	"governor.dev/governor/collectors/push"
	"governor.dev/governor/collectors/resources"
	"governor.dev/governor/shard"
)

// Options configure the controller manager.
type Options struct {
	Bundles *bundles.Registry
	// Metrics fill input.metrics; status.observations alone when nil.
	Metrics MetricSource
	// MetricsAddr and ProbeAddr are the listen addresses of the metrics
	// and health endpoints; "0" turns one off.
	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves Go's profiles (/debug/pprof/) when set, with no
	// authentication: for profiling on localhost, off in the manifest.
	PprofAddr string
	// MetricsServing is how the metrics endpoint (/metrics and /bundles)
	// serves: HTTPS for callers the API server authenticates and
	// authorises, unless Insecure.
	MetricsServing MetricsServing
	// LeaderElection makes only one replica run loops at a time, unless
	// Shards is set (every replica runs a share: there is no leader). A replica
	// that stops gracefully hands the Lease back once its runners have
	// stopped and written their status (the manager stops its runnables
	// before it releases the Lease): a standby takes over at its next
	// retry, not a lease duration later.
	LeaderElection          bool
	LeaderElectionNamespace string
	// Lease timings of leader election (client-go's LeaseDuration,
	// RenewDeadline and RetryPeriod); controller-runtime's defaults (15s,
	// 10s, 2s) where zero.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// HubbleRelay is Hubble Relay's host:port; "" leaves hubble collectors
	// without a source.
	HubbleRelay string
	HubbleTLS   TLSFiles
	// PrometheusAddress is Prometheus' base URL; "" leaves prometheus
	// collectors without a source.
	PrometheusAddress string
	// PushAddr is the listen address of the push endpoint; "" or "0" turns
	// it off. PushTLS, when set, makes it serve HTTPS (Cert and Key; CA and
	// ServerName are not used).
	PushAddr string
	PushTLS  TLSFiles
	// PushLimits are the push endpoint's rate limits and token TTL
	// (push.Limits: no rate limit where zero).
	PushLimits push.Limits

	// WatchNamespaces, when set, are the only namespaces whose loops run
	// and whose objects the controller reads (its cache watches only
	// those, so namespaced RBAC there is enough); all when empty.
	WatchNamespaces []string
	// Scope is what loops' collectors may observe (collectors.Scope: by
	// default Hubble flows of the loop's own namespace, no Prometheus).
	Scope collectors.Scope
	// Shards, when set, shards the loops across replicas: each replica
	// holds a member Lease named after Shards.Member in Shards.Namespace
	// (with the lease timings above) and runs the loops assigned to it.
	// Nil: the leader runs every loop.
	Shards *ShardOptions

	// StatusFlush is how often quiet ticks are written to the status (see
	// Loops.StatusFlush); 1s when zero.
	StatusFlush time.Duration
	// StatusWriteConcurrency bounds the status writes in flight (see
	// Loops.StatusWriteConcurrency); DefaultStatusWriteConcurrency when zero.
	StatusWriteConcurrency int
	// MaxStatusBytes bounds each loop's status (see Loops.MaxStatusBytes).
	MaxStatusBytes int
}

// MetricsServing configures the metrics endpoint's security. By default it
// serves HTTPS, with a self-signed certificate unless CertDir is given, and
// answers only callers whose bearer token the API server authenticates
// (TokenReview) and who may get the path (SubjectAccessReview: the
// metrics-reader ClusterRole), as kubebuilder's projects do.
type MetricsServing struct {
	// Insecure serves plain HTTP to anyone.
	Insecure bool
	// CertDir holds the certificate CertName and key KeyName (PEM,
	// reloaded when they change); "" is a self-signed certificate.
	CertDir, CertName, KeyName string
}

// The metrics endpoint's authentication needs these rights (controller-runtime's
// filters.WithAuthenticationAndAuthorization).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// options are the metrics server's options: every path it serves (the
// metrics and handlers) behind the filter, over TLS, unless insecure.
func (m MetricsServing) options(addr string, handlers map[string]http.Handler) (metricsserver.Options, *certwatcher.CertWatcher, error) {
	o := metricsserver.Options{BindAddress: addr, ExtraHandlers: handlers}
	if m.Insecure {
		return o, nil, nil
	}
	o.SecureServing = true
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
	// HTTP/1.1 only, as kubebuilder's scaffold: HTTP/2's stream resets
	// (CVE-2023-44487) are not worth it for a scrape.
	o.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	if m.CertDir == "" {
		return o, nil, nil
	}
	// A certificate named but missing is an error, not a silent fallback
	// to a self-signed one.
	w, err := certwatcher.New(filepath.Join(m.CertDir, m.CertName), filepath.Join(m.CertDir, m.KeyName))
	if err != nil {
		return o, nil, fmt.Errorf("metrics certificate: %w", err)
	}
	o.TLSOpts = append(o.TLSOpts, func(c *tls.Config) { c.GetCertificate = w.GetCertificate })
	return o, w, nil
}

// addCertWatcher runs the metrics certificate's watcher, if any, with the
// manager.
func addCertWatcher(mgr manager.Manager, w *certwatcher.CertWatcher) error {
	if w == nil {
		return nil
	}
	return mgr.Add(w)
}

// ShardOptions name this replica's member Lease.
type ShardOptions struct {
	Namespace, Member string
}

// TLSFiles configure TLS to a server from PEM files; all empty is plaintext.
type TLSFiles struct {
	CA, Cert, Key, ServerName string
}

func (f TLSFiles) config() (*tls.Config, error) {
	if f == (TLSFiles{}) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f.CA)
		}
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// collectorSet builds the collectors the options configure; hubble's
// streams close when the manager stops.
func collectorSet(cfg *rest.Config, mgr manager.Manager, opts Options) (collectors.Set, error) {
	set := collectors.Set{}
	if opts.HubbleRelay != "" {
		tlsCfg, err := opts.HubbleTLS.config()
		if err != nil {
			return set, fmt.Errorf("hubble relay TLS: %w", err)
		}
		h := hubble.New(hubble.Options{Address: opts.HubbleRelay, TLS: tlsCfg})
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return h.Close()
		})); err != nil {
			return set, err
		}
		set[v1alpha1.CollectorHubble] = h
	}
	if opts.PrometheusAddress != "" {
		p, err := prometheus.New(prometheus.Options{Address: opts.PrometheusAddress})
		if err != nil {
			return set, err
		}
		set[v1alpha1.CollectorPrometheus] = p
	}
	mc, err := metricsclient.NewForConfigAndClient(cfg, mgr.GetHTTPClient())
	if err != nil {
		return set, fmt.Errorf("metrics.k8s.io client: %w", err)
	}
	set[v1alpha1.CollectorResources] = resources.New(mgr.GetClient(), mc)
	return set, nil
}

// LeaderElectionID is the name of the Lease replicas compete for.
const LeaderElectionID = "governor.governor.dev"

// Scheme holds the types the controller reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration: cannot fail
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewManager builds the controller manager: the ControlLoop reconciler, the
// loop runners, the propagation of bandwidth to new Pods, health probes and
// metrics. Start it with mgr.Start.
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	if opts.Bundles == nil {
		return nil, fmt.Errorf("no bundles: the controller needs at least one policy bundle")
	}
	metricsOpts, certs, err := opts.MetricsServing.options(opts.MetricsAddr,
		map[string]http.Handler{"/bundles": bundleStatusHandler(opts.Bundles)})
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme(),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        opts.ProbeAddr,
		PprofBindAddress:              opts.PprofAddr,
		LeaderElection:                opts.LeaderElection && opts.Shards == nil,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionConfig:          ownConnection(cfg),
		LeaseDuration:                 nonZero(opts.LeaseDuration),
		RenewDeadline:                 nonZero(opts.RenewDeadline),
		RetryPeriod:                   nonZero(opts.RetryPeriod),
		// A process may build a new manager after stopping one (a restart
		// in place, as the restart tests do); names stay unique per manager.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// Secrets (the push endpoint's tokens) are read one by one, never
		// cached: the controller needs no right to list or watch them.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Cache: cache.Options{DefaultNamespaces: namespaces(opts.WatchNamespaces),
			// Every replica caches every loop, whatever its share: their
			// managedFields nothing reads (loops are written by patches).
			// Targets keep theirs: actuators apply.
			ByObject: map[client.Object]cache.ByObject{&v1alpha1.ControlLoop{}: {Transform: cache.TransformStripManagedFields()}}},
	})
	if err != nil {
		return nil, err
	}
	if err := addCertWatcher(mgr, certs); err != nil {
		return nil, err
	}
	metrics := opts.Metrics
	if metrics == nil {
		if metrics, err = collectorSet(cfg, mgr, opts); err != nil {
			return nil, err
		}
	}
	if opts.PushAddr != "" && opts.PushAddr != "0" {
		if err := mgr.Add(push.NewServer(mgr.GetClient(), push.Options{Addr: opts.PushAddr, CertFile: opts.PushTLS.Cert, KeyFile: opts.PushTLS.Key,
			Limits: opts.PushLimits, Namespaces: opts.WatchNamespaces})); err != nil {
			return nil, err
		}
	}
	loops := &Loops{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Cache:     mgr.GetCache(),
		Bundles:   opts.Bundles,
		Metrics:   metrics,
		Scope:     opts.Scope,
		Recorder:  mgr.GetEventRecorder("governor"),
		Log:       mgr.GetLogger().WithName("loops"),

		StatusFlush:            opts.StatusFlush,
		StatusWriteConcurrency: opts.StatusWriteConcurrency,
		MaxStatusBytes:         opts.MaxStatusBytes,
	}
	member, err := addLoops(mgr, loops, opts)
	if err != nil {
		return nil, err
	}
	if err := (&Reconciler{Loops: loops}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := bandwidth.SetupPodPropagation(mgr, propagationOptions(member)); err != nil {
		return nil, err
	}
	if err := addBundlesAndChecks(mgr, opts, loops); err != nil {
		return nil, err
	}
	registerMetrics.Do(func() {
		for _, c := range slices.Concat(bundles.Metrics(), loopMetrics(), push.Metrics()) {
			ctrlmetrics.Registry.MustRegister(c)
		}
		ctrlmetrics.Registry.MustRegister(shardLoops, shardClaims, shardTakeoverSeconds)
	})
	return mgr, nil
}

// addBundlesAndChecks adds the bundles' followers, which run in every
// replica, and the health checks: a replica is ready once every bundle has
// a revision to decide with.
func addBundlesAndChecks(mgr manager.Manager, opts Options, loops *Loops) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	opts.Bundles.SetDecisionPaths(decisionPaths(mgr.GetAPIReader(), opts.WatchNamespaces))
	opts.Bundles.SetProbes(lastDecisions(mgr.GetAPIReader(), opts.WatchNamespaces, opts.Bundles, clusterWorld{l: loops}.Actuators()))
	if err := mgr.Add(opts.Bundles); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("bundles", func(*http.Request) error { return opts.Bundles.Ready() })
}

// ownConnection is cfg for a client with a connection of its own: client-go
// shares one transport (one HTTP/2 connection) among clients of the same
// TLS settings, but never one whose Proxy is set. Leader election gets one,
// so that its renewals do not wait behind the watch events and writes of
// the controller's connection.
func ownConnection(cfg *rest.Config) *rest.Config {
	own := rest.CopyConfig(cfg)
	if own.Proxy == nil {
		own.Proxy = http.ProxyFromEnvironment // what client-go uses when unset
	}
	return own
}

// addLoops adds the loop runners to the manager: behind leader election,
// or sharded across replicas (and then it returns this replica's member).
func addLoops(mgr manager.Manager, loops *Loops, opts Options) (*shard.Member, error) {
	if opts.Shards == nil {
		return nil, mgr.Add(loops)
	}
	t := shard.Timings{
		LeaseDuration: cmp.Or(opts.LeaseDuration, 15*time.Second),
		RenewDeadline: cmp.Or(opts.RenewDeadline, 10*time.Second),
		RetryPeriod:   cmp.Or(opts.RetryPeriod, 2*time.Second),
	}
	// Leases are read from the API server, and watched in their
	// namespace only: the manager's cache of them would watch every
	// namespace's. On a connection of their own, as leader election's,
	// so that renewals do not wait behind the loops' status writes and
	// watch events.
	c, err := client.NewWithWatch(ownConnection(mgr.GetConfig()), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, err
	}
	member := shard.NewMember(c, opts.Shards.Namespace, opts.Shards.Member, t, mgr.GetLogger().WithName("shard"))
	loops.Shard = member
	loops.CacheVersion = StoreVersion(mgr.GetCache())
	return member, mgr.Add(&shardedLoops{loops: loops, member: member})
}

// propagationOptions share the propagation of bandwidth to new Pods among
// sharded replicas, with no leader to do it: the member a workload hashes
// to gives its Pods their bandwidth at once, any other after a lease
// duration (the time the member's loops take to move when it is gone).
func propagationOptions(member *shard.Member) bandwidth.PropagationOptions {
	if member == nil {
		return bandwidth.PropagationOptions{}
	}
	return bandwidth.PropagationOptions{Owns: member.Owns, Grace: member.Timings.LeaseDuration}
}

// nonZero is d, or nil (controller-runtime's default) when zero.
func nonZero(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
}

// namespaces is the cache's configuration for the watched namespaces: nil
// (every namespace) when none is given.
func namespaces(watched []string) map[string]cache.Config {
	if len(watched) == 0 {
		return nil
	}
	out := map[string]cache.Config{}
	for _, ns := range watched {
		out[ns] = cache.Config{}
	}
	return out
}

// decisionPaths lists the decision paths of the loops that follow a
// bundle's active revision (pinned loops do not), for a bundle that
// declares no entrypoints. They are read from the API server itself so that
// every replica, leader or not, gates a new revision on the loops as they
// are: in the watched namespaces only (all when none is given). The
// follower retries a failed list, showing why.
func decisionPaths(api client.Reader, watched []string) func(ctx context.Context, bundle string) ([]string, error) {
	return func(ctx context.Context, bundle string) ([]string, error) {
		loops, err := listLoops(ctx, api, watched)
		if err != nil {
			return nil, fmt.Errorf("listing ControlLoops for their decision paths: %w", err)
		}
		paths := map[string]bool{}
		for _, l := range loops {
			if l.Spec.Policy.Bundle == bundle && l.Spec.Policy.Revision == "" {
				paths[l.Spec.Policy.Decision] = true
			}
		}
		return slices.Sorted(maps.Keys(paths)), nil
	}
}

// listLoops lists the loops of the watched namespaces (all when none is
// given) one namespace at a time, so namespaced rights are enough.
func listLoops(ctx context.Context, api client.Reader, watched []string) ([]v1alpha1.ControlLoop, error) {
	scopes := []string{metav1.NamespaceAll}
	if len(watched) > 0 {
		scopes = watched
	}
	var all []v1alpha1.ControlLoop
	for _, ns := range scopes {
		var loops v1alpha1.ControlLoopList
		if err := api.List(ctx, &loops, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		all = append(all, loops.Items...)
	}
	return all, nil
}

// registerMetrics registers the bundle, loop and push metrics once per process, as
// they are (a process may build more than one manager).
var registerMetrics sync.Once

// bundleStatusHandler serves every bundle's status as JSON, on the metrics
// endpoint: GET /bundles.
func bundleStatusHandler(reg *bundles.Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out []v1alpha1.BundleStatus
		for _, name := range reg.Names() {
			if st, ok := reg.Status(name); ok {
				out = append(out, *bundleStatus(&st))
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// StoreVersion is the resourceVersion of the loops the cache's informer
// has put in its store ("" while it has none, or when the informer does
// not say: a cache of several namespaces). It reads client-go's
// LastStoreSyncResourceVersion through the informer controller-runtime
// returns: exported for the test that holds it to a real API server.
func StoreVersion(c cache.Cache) func() string {
	var store toolscache.Store
	var once sync.Once
	return func() string {
		once.Do(func() {
			if inf, err := c.GetInformer(context.Background(), &v1alpha1.ControlLoop{}, cache.BlockUntilSynced(false)); err == nil {
				store = storeOf(inf)
			}
		})
		if store == nil {
			return ""
		}
		return store.LastStoreSyncResourceVersion()
	}
}
