package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"governor.dev/governor/sim/demo"
)

func newDemoCommand() *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo [--duration 2m] [--report DIR]",
		Short: "Run the loops live on a local cluster and a simulated factory, then write a report",
		Long: `Run Governor end to end on this machine, with no cluster of its own: start the
local cluster the project builds (kube-apiserver, etcd, kube-controller-manager,
kube-scheduler, and kwok with 3 fake Nodes; make envtest-assets builds them into
bin/k8s), install the ControlLoop CRD, create a small factory (namespace factory),
serve a simulated Hubble Relay whose jitter follows the egress bandwidth granted to
the best-effort workloads, and run the controller in-process with three loops:
factory-qos (bandwidth), factory-scaling (reactive) and factory-priorities
(deliberative, rewriting factory-scaling's priorities). What each loop sees, decides
and changes is shown live.

After --duration (counted from the loops' creation), or on Ctrl-C or SIGTERM, it
writes DIR/report.png (jitter, egress bandwidth, priorities and the web tier over
time) and DIR/history.jsonl (every loop's decisions, one a line), and stops
everything it started. The components' logs are in DIR/logs.`,
		Example: `  make envtest-assets && governor demo --duration 2m
  governor demo --duration 0        # until Ctrl-C`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts.Out = cmd.OutOrStdout()
			if fd := int(os.Stdout.Fd()); opts.Out == os.Stdout && term.IsTerminal(fd) {
				opts.Live = true
				if w, h, err := term.GetSize(fd); err == nil {
					opts.Width, opts.Height = w, h
				}
			}
			_, err := demo.Run(ctx, opts)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&opts.Duration, "duration", 2*time.Minute, "how long the loops run (0: until Ctrl-C)")
	f.StringVar(&opts.ReportDir, "report", "demo-report", "directory of the report (report.png, history.jsonl, logs/)")
	f.StringVar(&opts.AssetsDir, "assets", "bin/k8s", "directory of the local cluster's binaries (make envtest-assets)")
	f.StringVar(&opts.BundlesDir, "bundles", "policies", "directory of the policy bundles bandwidth, reactive and deliberative")
	return cmd
}
