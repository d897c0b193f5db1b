package main

import (
	"cmp"
	"context"
	goflag "flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/bundles"
	"governor.dev/governor/collectors"
	"governor.dev/governor/collectors/push"
	"governor.dev/governor/controller"
	"governor.dev/governor/decision"
	"governor.dev/governor/shard"
)

// runLong is governor run's help.
const runLong = `Run the controller manager: it ticks every ControlLoop at its interval, decides
with the loop's bundle, guards the decision and acts on the loop's targets.

Bundles come from a directory, an OPA configuration, or both (names must not
clash). --bundles DIR loads each subdirectory or .tar.gz of DIR at start, as a
bundle named after it. --opa-config FILE (or --opa-config-map, the key
config.yaml of a ConfigMap, read once at start) is an OPA configuration file:
its services, bundles and keys say which bundles to follow on which bundle
servers, as 'opa run --config-file' follows them, and decision_logs where every
decision is logged. Every downloaded revision is
verified (a bundle server's bundles must be signed and its services https://,
unless --allow-unsigned-bundles and --allow-insecure-bundle-services), compiled,
has its own tests run and its declared entrypoints (the decision paths loops
may name) prepared before it goes live; a refused revision leaves the last
good one deciding.

--watch-namespaces runs only the loops of some namespaces (namespaced RBAC
there is then enough: config/namespaced); --observe-namespaces and
--prometheus-namespaces bound what loops' hubble and prometheus collectors
may observe.

With --shards auto every replica runs a share of the loops: each holds a
member Lease and runs the loops assigned to it by rendezvous hashing; there is
no leader (a replica that loses its Lease for a while stops its loops and takes
its share back, it does not exit), and the replica a workload hashes to gives
its new Pods their bandwidth. With --shards 1, leader election (on by default)
makes only one replica run the loops. A standby takes over a crashed leader's
Lease once it expires (--leader-elect-lease-duration, and a few retries), and
at its next retry (--leader-elect-retry-period) after a graceful stop, which
hands the Lease back once the loops' last ticks are written. Every replica
follows the bundles. /healthz and /readyz answer on the probe address
(ready once every bundle has a revision); Prometheus metrics and GET /bundles
(each bundle's status, JSON) on the metrics address, over HTTPS to callers
the API server authenticates and authorises (--metrics-secure).`

// runFlags are governor run's flags.
type runFlags struct {
	bundleDir, opaConfig, opaConfigMap, kubeconfig string
	opts                                           controller.Options
	zapOpts                                        zap.Options
	qps                                            float32
	burst                                          int
	limits                                         bundles.Limits
	// metricsSecure is --metrics-secure (opts.MetricsServing.Insecure is
	// its negation, set by check).
	metricsSecure       bool
	shards, shardMember string
}

// The API client's limits. client-go's defaults (5 and 10) make every
// acting tick wait: it writes Pods, the workload, the status and Events.
// A loop writes its status once a second when quiet (--status-flush-interval)
// and at once when it acts, so 1,000 loops at 1 s need about 1,000 writes a
// second; reads come from the cache. The API server's priority and fairness
// keeps one client from starving the others.
const (
	defaultQPS   = 1000
	defaultBurst = 2000
)

// Leader election's lease timings (README, "Failover"). A standby takes a
// Lease not renewed for the lease duration (by its clock, from when it saw
// the last renewal), trying every retry period plus up to 120 % jitter; a
// leader that cannot renew within the renew deadline stops leading. After a
// crash, failover takes the lease duration and up to two jittered retries
// (8.5 s measured; Kubernetes' 15s/10s/2s took 16-18 s); after a graceful
// stop, which hands the Lease back, one retry (0.5 s measured). The lease
// outlasts the deadline plus a retry, so that a leader cut off from the API
// server has stopped before a standby may start, and 6 s of failed renewals
// (about 12 tries) are needed before a leader gives up. Each replica sends
// one small request per retry period.
const (
	defaultLeaseDuration = 8 * time.Second
	defaultRenewDeadline = 6 * time.Second
	defaultRetryPeriod   = 500 * time.Millisecond
)

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [--bundles DIR] [--opa-config FILE | --opa-config-map NAMESPACE/NAME]",
		Short: "Run the controller manager",
		Long:  runLong,
		Example: `  governor run --bundles policies/ --kubeconfig ~/.kube/config --leader-elect=false
  governor run --opa-config opa-config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd.Context()) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.bundleDir, "bundles", "", "directory of policy bundles (one subdirectory or .tar.gz each)")
	fs.StringVar(&f.opaConfig, "opa-config", "", "OPA configuration file (services, bundles, keys) of bundles to follow")
	fs.StringVar(&f.opaConfigMap, "opa-config-map", "", "NAMESPACE/NAME of a ConfigMap whose config.yaml is the OPA configuration")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&f.opts.MetricsAddr, "metrics-bind-address", ":8443", "metrics endpoint address, /metrics and /bundles (0 turns it off)")
	f.metricsFlags(fs)
	fs.StringVar(&f.opts.ProbeAddr, "health-probe-bind-address", ":8081", "health probe address")
	fs.StringVar(&f.opts.PprofAddr, "pprof-bind-address", "", "Go's profiles (/debug/pprof/) on this address, unauthenticated: bind it to localhost (default: off)")
	fs.BoolVar(&f.opts.LeaderElection, "leader-elect", true, "with --shards 1: run loops only while holding the leader Lease")
	fs.StringVar(&f.opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader Lease (default: the pod's own)")
	fs.DurationVar(&f.opts.LeaseDuration, "leader-elect-lease-duration", defaultLeaseDuration, "how long standbys wait, after the leader's last renewal, before taking its Lease (whole seconds)")
	fs.DurationVar(&f.opts.RenewDeadline, "leader-elect-renew-deadline", defaultRenewDeadline, "how long the leader tries to renew its Lease before it stops leading (below the lease duration)")
	fs.DurationVar(&f.opts.RetryPeriod, "leader-elect-retry-period", defaultRetryPeriod, "how often replicas try to take or renew the Lease (renew deadline above 1.2 times this)")
	fs.StringVar(&f.shards, "shards", "1", "auto: every replica holds a member Lease and runs the loops assigned to it; 1: the leader runs every loop")
	fs.StringVar(&f.shardMember, "shard-member", "", "this replica's member name with --shards auto (default: $POD_NAME, else the host name)")
	fs.StringVar(&f.opts.HubbleRelay, "hubble-relay", "", "Hubble Relay host:port for hubble collectors")
	fs.StringVar(&f.opts.HubbleTLS.CA, "hubble-tls-ca", "", "CA bundle (PEM) that signs Hubble Relay's certificate")
	fs.StringVar(&f.opts.HubbleTLS.Cert, "hubble-tls-cert", "", "client certificate (PEM) for Hubble Relay")
	fs.StringVar(&f.opts.HubbleTLS.Key, "hubble-tls-key", "", "client key (PEM) for Hubble Relay")
	fs.StringVar(&f.opts.HubbleTLS.ServerName, "hubble-tls-server-name", "", "server name to verify Hubble Relay's certificate against")
	fs.StringVar(&f.opts.PrometheusAddress, "prometheus-address", "", "Prometheus base URL for prometheus collectors")
	fs.StringVar(&f.opts.PushAddr, "push-bind-address", ":8082", "push endpoint address (0 turns it off)")
	fs.StringVar(&f.opts.PushTLS.Cert, "push-tls-cert", "", "serve the push endpoint over HTTPS with this certificate (PEM; reloaded when it changes)")
	fs.StringVar(&f.opts.PushTLS.Key, "push-tls-key", "", "the push endpoint certificate's private key (PEM)")
	fs.Float64Var(&f.opts.PushLimits.LoopRate, "push-rate", push.DefaultLoopRate, "authenticated pushes a second one loop accepts, in bursts of up to twice as many; more are answered 429 (0: no limit)")
	fs.Float64Var(&f.opts.PushLimits.ClientRate, "push-client-rate", push.DefaultClientRate, "requests a second the push endpoint accepts from one client address (IPv6: its /64), in bursts of up to twice as many; more are answered 429 (0: no limit)")
	fs.DurationVar(&f.opts.PushLimits.TokenTTL, "push-token-ttl", push.DefaultTokenTTL, "how long the push endpoint trusts a token Secret it has read: a rotated or deleted token stops working within this")
	fs.Float32Var(&f.qps, "kube-api-qps", defaultQPS, "requests per second the controller's API client may send (client-side limit; the API server's priority and fairness protects the server)")
	fs.IntVar(&f.burst, "kube-api-burst", defaultBurst, "requests the controller's API client may send at once, above --kube-api-qps")
	fs.DurationVar(&f.opts.StatusFlush, "status-flush-interval", time.Second, "how often a loop's quiet ticks (no change, refusal or failure) are written to its status; every other tick is written at once")
	fs.IntVar(&f.opts.StatusWriteConcurrency, "status-write-concurrency", controller.DefaultStatusWriteConcurrency, "status writes in flight at most; they are made off the ticks' path, each loop's newest status once, so a slow API server delays the status, not the ticks (also the loops taken over at once)")
	f.limitFlags(fs)
	f.trustFlags(fs)
	f.scopeFlags(fs)
	logFlags := goflag.NewFlagSet("log", goflag.ContinueOnError)
	f.zapOpts.BindFlags(logFlags)
	fs.AddGoFlagSet(logFlags)
	return cmd
}

// trustFlags are the flags that let an OPA configuration follow bundles
// that are not signed, or reach services without TLS: both refused by
// default.
func (f *runFlags) trustFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.limits.AllowUnsignedBundles, "allow-unsigned-bundles", false, "follow bundles on bundle servers with no key to verify them (refused by default: configure keys)")
	fs.BoolVar(&f.limits.AllowInsecureServices, "allow-insecure-bundle-services", false, "let the OPA configuration's services (bundles, decision logs) be http:// (refused by default: bundles and decision logs would travel in clear)")
}

// metricsFlags are the metrics endpoint's, as kubebuilder's projects name
// them: HTTPS with authentication and authorisation by the API server
// unless --metrics-secure=false.
func (f *runFlags) metricsFlags(fs *pflag.FlagSet) {
	m := &f.opts.MetricsServing
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, "serve the metrics endpoint over HTTPS to callers the API server authenticates and authorises (get on the path, e.g. ClusterRole metrics-reader); false: plain HTTP to anyone")
	fs.StringVar(&m.CertDir, "metrics-cert-path", "", "directory of the metrics endpoint's certificate and key (reloaded when they change; default: self-signed)")
	fs.StringVar(&m.CertName, "metrics-cert-name", "tls.crt", "the certificate's file in --metrics-cert-path")
	fs.StringVar(&m.KeyName, "metrics-cert-key", "tls.key", "the key's file in --metrics-cert-path")
}

// limitFlags are the flags that bound what policies may take: builtins,
// time, memory.
func (f *runFlags) limitFlags(fs *pflag.FlagSet) {
	l := &f.limits
	fs.StringArrayVar(&l.AllowBuiltins, "allow-builtin", nil, "let policies call this builtin that reaches outside the controller (repeatable; refused by default: "+strings.Join(bundles.OutsideBuiltins(), ", ")+")")
	fs.DurationVar(&l.MaxDecisionTimeout, "max-decision-timeout", bundles.DefaultMaxDecisionTimeout, "the longest time limit a loop's spec.policy.timeout may give a decision")
	fs.Int64Var(&l.MaxBundleFileBytes, "max-bundle-file-bytes", bundles.DefaultMaxBundleFileBytes, "bytes of each file of a bundle and of all of them together, uncompressed, checked while reading, and of a downloaded bundle's transfer (a smaller size_limit_bytes in the OPA configuration wins)")
	fs.Int64Var(&l.DecisionLogBufferBytes, "decision-log-buffer-bytes", bundles.DefaultDecisionLogBufferBytes, "bytes of decisions the decision log holds while its service does not take them (the oldest are dropped beyond)")
	fs.IntVar(&l.Output.MaxActions, "max-decision-actions", decision.DefaultMaxActions, "actions a decision may return")
	fs.IntVar(&l.Output.MaxEvents, "max-decision-events", decision.DefaultMaxEvents, "events a decision may return")
	fs.IntVar(&l.Output.MaxStringBytes, "max-decision-string-bytes", decision.DefaultMaxStringBytes, "bytes of each event, and of each action's target, metric and reason")
	fs.IntVar(&l.Output.MaxStateBytes, "max-decision-state-bytes", decision.DefaultMaxStateBytes, "bytes of a decision's state (and params), as JSON")
	fs.IntVar(&f.opts.MaxStatusBytes, "max-status-bytes", controller.DefaultMaxStatusBytes, "bytes of a loop's status, as JSON: the oldest history entries are dropped to stay under it")
}

// scopeFlags are the flags that say where loops run and what they may
// observe (README, "Scopes").
func (f *runFlags) scopeFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.opts.WatchNamespaces, "watch-namespaces", nil, "run only the loops of these namespaces, and read objects only there (default: every namespace); namespaced RBAC there is then enough (config/namespaced)")
	fs.StringSliceVar(&f.opts.Scope.Observe, "observe-namespaces", nil, "namespaces a loop's hubble filters may name besides the loop's own ('*': any, and filters naming none)")
	fs.StringSliceVar(&f.opts.Scope.Prometheus, "prometheus-namespaces", nil, "namespaces whose loops may run prometheus queries, which read any namespace's metrics ('*': every namespace; default: none)")
}

// checkScopes refuses namespace lists that name no namespace.
func (f *runFlags) checkScopes() error {
	for _, l := range []struct {
		flag     string
		list     []string
		wildcard bool
	}{
		{"--watch-namespaces", f.opts.WatchNamespaces, false},
		{"--observe-namespaces", f.opts.Scope.Observe, true},
		{"--prometheus-namespaces", f.opts.Scope.Prometheus, true},
	} {
		for _, ns := range l.list {
			if l.wildcard && ns == collectors.AllNamespaces {
				continue
			}
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("%s: %q is not a namespace name: %s", l.flag, ns, errs[0])
			}
		}
	}
	return nil
}

// checkLimits refuses limits out of range.
func (f *runFlags) checkLimits() error {
	l := f.limits
	if err := bundles.CheckAllowBuiltins(l.AllowBuiltins); err != nil {
		return err
	}
	if l.MaxDecisionTimeout <= 0 {
		return fmt.Errorf("--max-decision-timeout must be above 0 (got %s)", l.MaxDecisionTimeout)
	}
	if l.MaxBundleFileBytes <= 0 || l.DecisionLogBufferBytes <= 0 {
		return fmt.Errorf("--max-bundle-file-bytes and --decision-log-buffer-bytes must be above 0 (got %d and %d)", l.MaxBundleFileBytes, l.DecisionLogBufferBytes)
	}
	o := l.Output
	if o.MaxActions < 1 || o.MaxEvents < 1 || o.MaxStringBytes < 1 || o.MaxStateBytes < 1 {
		return fmt.Errorf("--max-decision-actions, --max-decision-events, --max-decision-string-bytes and --max-decision-state-bytes must be at least 1 (got %d, %d, %d and %d)",
			o.MaxActions, o.MaxEvents, o.MaxStringBytes, o.MaxStateBytes)
	}
	// The policy's state is kept whole in the status: the history makes room.
	if f.opts.MaxStatusBytes < 2*o.MaxStateBytes {
		return fmt.Errorf("--max-status-bytes (%d) must be at least twice --max-decision-state-bytes (%d)", f.opts.MaxStatusBytes, o.MaxStateBytes)
	}
	return nil
}

// check refuses flags that do not go together or are out of range.
func (f *runFlags) check() error {
	if f.bundleDir == "" && f.opaConfig == "" && f.opaConfigMap == "" {
		return fmt.Errorf("no bundles: give --bundles, --opa-config or --opa-config-map")
	}
	if f.opaConfig != "" && f.opaConfigMap != "" {
		return fmt.Errorf("give --opa-config or --opa-config-map, not both")
	}
	if f.qps <= 0 || f.burst < 1 {
		return fmt.Errorf("--kube-api-qps must be above 0 and --kube-api-burst at least 1 (got %g and %d)", f.qps, f.burst)
	}
	if f.opts.StatusFlush <= 0 {
		return fmt.Errorf("--status-flush-interval must be above 0 (got %s)", f.opts.StatusFlush)
	}
	if f.opts.StatusWriteConcurrency < 1 {
		return fmt.Errorf("--status-write-concurrency must be at least 1 (got %d)", f.opts.StatusWriteConcurrency)
	}
	f.opts.MetricsServing.Insecure = !f.metricsSecure
	if f.opts.MetricsServing.Insecure && f.opts.MetricsServing.CertDir != "" {
		return fmt.Errorf("--metrics-cert-path serves HTTPS: it goes with --metrics-secure, not --metrics-secure=false")
	}
	if err := checkPush(f.opts); err != nil {
		return err
	}
	if err := f.checkScopes(); err != nil {
		return err
	}
	if err := checkLease(f.opts.LeaseDuration, f.opts.RenewDeadline, f.opts.RetryPeriod); err != nil {
		return err
	}
	if f.opaConfigMap != "" {
		if _, _, err := configMapRef(f.opaConfigMap); err != nil {
			return err
		}
	}
	if f.shards != "auto" && f.shards != "1" {
		return fmt.Errorf("--shards must be auto or 1 (got %q)", f.shards)
	}
	return f.checkLimits()
}

// checkPush refuses push endpoint flags out of range.
func checkPush(opts controller.Options) error {
	l := opts.PushLimits
	switch {
	case (opts.PushTLS.Cert == "") != (opts.PushTLS.Key == ""):
		return fmt.Errorf("--push-tls-cert and --push-tls-key go together")
	case !(l.LoopRate >= 0) || math.IsInf(l.LoopRate, 0):
		return fmt.Errorf("--push-rate must be a number of requests a second, 0 or more (got %g)", l.LoopRate)
	case !(l.ClientRate >= 0) || math.IsInf(l.ClientRate, 0):
		return fmt.Errorf("--push-client-rate must be a number of requests a second, 0 or more (got %g)", l.ClientRate)
	case l.TokenTTL < 0:
		return fmt.Errorf("--push-token-ttl must be 0 (the default, %s) or more (got %s)", push.DefaultTokenTTL, l.TokenTTL)
	}
	return nil
}

// checkLease refuses lease timings client-go's leader election would refuse
// or misread: it records the lease duration in whole seconds, and requires
// the renew deadline between 1.2 retry periods (its jitter) and the lease
// duration.
func checkLease(lease, renew, retry time.Duration) error {
	switch {
	case lease < time.Second || lease%time.Second != 0:
		return fmt.Errorf("--leader-elect-lease-duration must be a whole number of seconds, at least 1s (got %s)", lease)
	case retry <= 0:
		return fmt.Errorf("--leader-elect-retry-period must be above 0 (got %s)", retry)
	case renew >= lease:
		return fmt.Errorf("--leader-elect-renew-deadline (%s) must be below --leader-elect-lease-duration (%s)", renew, lease)
	case float64(renew) <= leaderelection.JitterFactor*float64(retry):
		return fmt.Errorf("--leader-elect-renew-deadline (%s) must be above %g times --leader-elect-retry-period (%s)", renew, leaderelection.JitterFactor, retry)
	}
	return nil
}

// run checks the flags, loads the bundles and the OPA configuration, and
// runs the manager until a signal stops it.
func (f *runFlags) run(ctx context.Context) error {
	var cleanup []func()
	defer func() {
		for _, c := range cleanup {
			c()
		}
	}()
	if err := f.check(); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zapOpts)))
	boundHeap(memlimit.FromCgroup)
	// Bundles and a configuration file are checked before anything
	// connects: a mistake in them is the operator's first error.
	registry := bundles.NewRegistry()
	registry.SetLimits(f.limits)
	if f.bundleDir != "" {
		if err := registry.AddDir(ctx, f.bundleDir); err != nil {
			return err
		}
	}
	addSources := func(sources *bundles.Config, err error) error {
		if err != nil {
			return err
		}
		cleanup = append(cleanup, sources.Close)
		return registry.AddSources(sources)
	}
	if f.opaConfig != "" {
		if err := addSources(bundles.ReadConfig(f.opaConfig, f.limits)); err != nil {
			return err
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.QPS, cfg.Burst = f.qps, f.burst
	if f.opaConfigMap != "" {
		if err := addSources(readConfigMap(ctx, cfg, f.opaConfigMap, f.limits)); err != nil {
			return err
		}
	}
	f.opts.Bundles = registry
	if f.shards == "auto" {
		if f.opts.Shards, err = f.shardOptions(); err != nil {
			return err
		}
	}
	mgr, err := controller.NewManager(cfg, f.opts)
	if err != nil {
		return err
	}
	ctrl.Log.Info("starting", "bundles", registry.Names(), "leaderElection", f.opts.LeaderElection && f.opts.Shards == nil, "watchNamespaces", f.opts.WatchNamespaces, "shards", f.shards)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// serviceAccountNamespace holds the pod's namespace, in a cluster.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// shardOptions names this replica's member Lease: in the leader election
// namespace (the pod's own by default), after --shard-member, $POD_NAME or
// the host name.
func (f *runFlags) shardOptions() (*controller.ShardOptions, error) {
	ns := f.opts.LeaderElectionNamespace
	if ns == "" {
		raw, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return nil, fmt.Errorf("--shards auto outside a cluster needs --leader-election-namespace for the member Leases")
		}
		ns = strings.TrimSpace(string(raw))
	}
	member := cmp.Or(f.shardMember, os.Getenv("POD_NAME"))
	if member == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--shards auto: no --shard-member, $POD_NAME or host name: %w", err)
		}
		member = host
	}
	if errs := validation.IsDNS1123Subdomain(shard.LeasePrefix + member); len(errs) > 0 {
		return nil, fmt.Errorf("--shard-member %q: not a valid Lease name suffix: %s", member, strings.Join(errs, "; "))
	}
	return &controller.ShardOptions{Namespace: ns, Member: member}, nil
}

// readConfigMap reads the OPA configuration from the key config.yaml of a
// ConfigMap ("namespace/name").
func readConfigMap(ctx context.Context, cfg *rest.Config, ref string, lim bundles.Limits) (*bundles.Config, error) {
	ns, name, err := configMapRef(ref)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
		return nil, fmt.Errorf("reading the OPA configuration: %w", err)
	}
	raw, ok := cm.Data[configMapKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s has no key %s", ref, configMapKey)
	}
	sources, err := bundles.ParseConfig([]byte(raw), lim)
	if err != nil {
		return nil, fmt.Errorf("OPA configuration in ConfigMap %s: %w", ref, err)
	}
	return sources, nil
}

// configMapKey is the key of --opa-config-map's ConfigMap that holds the
// OPA configuration.
const configMapKey = "config.yaml"

// configMapRef splits --opa-config-map's "namespace/name".
func configMapRef(ref string) (namespace, name string, err error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--opa-config-map %q: want NAMESPACE/NAME", ref)
	}
	return ns, name, nil
}

// heapShare is the share of the container's memory limit given to the Go
// runtime (GOMEMLIMIT): the rest is for the binary's pages the process has
// read, which the container's memory counts too (79 MiB with 1,000 loops:
// BenchmarkScale; at 90 % the process sat at its 512Mi limit).
const heapShare = 0.8

// boundHeap makes heapShare of the container's memory limit (limit: its
// cgroup's) the Go runtime's soft limit, unless GOMEMLIMIT sets one: the collector
// then works harder as the heap nears it instead of letting it double past
// the live heap (a thousand loops' ticks in flight grew past a 512 MiB
// limit between collections).
func boundHeap(limit memlimit.Provider) {
	log := ctrl.Log.WithName("memory")
	set, err := memlimit.Set(memlimit.WithRatio(heapShare), memlimit.WithProvider(limit))
	switch {
	case err != nil:
		log.Info("heap not bounded: the memory limit could not be read", "error", err.Error())
	case set < math.MaxInt64:
		log.Info("heap bounded", "GOMEMLIMIT", set)
	}
}
