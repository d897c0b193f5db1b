package controller

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
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
	// LeaderElection makes only one replica run loops at a time.
	LeaderElection          bool
	LeaderElectionNamespace string
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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// A process may build a new manager after stopping one (a restart
		// in place, as the restart tests do); names stay unique per manager.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	loops := &Loops{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Bundles:   opts.Bundles,
		Metrics:   opts.Metrics,
		Recorder:  mgr.GetEventRecorder("governor"),
		Log:       mgr.GetLogger().WithName("loops"),
	}
	if err := mgr.Add(loops); err != nil {
		return nil, err
	}
	if err := (&Reconciler{Loops: loops}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := bandwidth.SetupPodPropagation(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
