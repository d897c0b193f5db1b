package main

import (
	goflag "flag"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/bundles"
	"governor.dev/governor/controller"
)

func newRunCommand() *cobra.Command {
	var (
		bundleDir, kubeconfig string
		opts                  controller.Options
		zapOpts               zap.Options
	)
	cmd := &cobra.Command{
		Use:   "run --bundles DIR",
		Short: "Run the controller manager",
		Long: `Run the controller manager: it ticks every ControlLoop at its interval, decides
with the loop's bundle, guards the decision and acts on the loop's targets.

Bundles are loaded from DIR at start: each subdirectory or .tar.gz is a bundle
named after it. Leader election (on by default) makes only one replica run the
loops; /healthz and /readyz answer on the probe address, Prometheus metrics on
the metrics address.`,
		Example: `  governor run --bundles policies/ --kubeconfig ~/.kube/config --leader-elect=false`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
			registry, err := bundles.LoadRegistry(cmd.Context(), bundleDir)
			if err != nil {
				return err
			}
			opts.Bundles = registry
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return fmt.Errorf("kubernetes client config: %w", err)
			}
			mgr, err := controller.NewManager(cfg, opts)
			if err != nil {
				return err
			}
			ctrl.Log.Info("starting", "bundles", registry.Names(), "leaderElection", opts.LeaderElection)
			return mgr.Start(ctrl.SetupSignalHandler())
		},
	}
	f := cmd.Flags()
	f.StringVar(&bundleDir, "bundles", "", "directory of policy bundles (one subdirectory or .tar.gz each)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "metrics endpoint address (0 turns it off)")
	f.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "health probe address")
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "run loops only while holding the leader Lease")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader Lease (default: the pod's own)")
	f.StringVar(&opts.HubbleRelay, "hubble-relay", "", "Hubble Relay host:port for hubble collectors")
	f.StringVar(&opts.HubbleTLS.CA, "hubble-tls-ca", "", "CA bundle (PEM) that signs Hubble Relay's certificate")
	f.StringVar(&opts.HubbleTLS.Cert, "hubble-tls-cert", "", "client certificate (PEM) for Hubble Relay")
	f.StringVar(&opts.HubbleTLS.Key, "hubble-tls-key", "", "client key (PEM) for Hubble Relay")
	f.StringVar(&opts.HubbleTLS.ServerName, "hubble-tls-server-name", "", "server name to verify Hubble Relay's certificate against")
	f.StringVar(&opts.PrometheusAddress, "prometheus-address", "", "Prometheus base URL for prometheus collectors")
	f.StringVar(&opts.PushAddr, "push-bind-address", ":8082", "push endpoint address (0 turns it off)")
	logFlags := goflag.NewFlagSet("log", goflag.ContinueOnError)
	zapOpts.BindFlags(logFlags)
	f.AddGoFlagSet(logFlags)
	_ = cmd.MarkFlagRequired("bundles")
	return cmd
}
