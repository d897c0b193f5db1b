package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller/replay"
	"governor.dev/governor/internal/jsonl"
)

func newReplayCommand() *cobra.Command {
	var (
		loopFiles           []string
		traceFile           string
		bundleDir, plotFile string
		historyFile         string
	)
	cmd := &cobra.Command{
		Use:   "replay --loop FILE [--loop FILE...] --trace FILE",
		Short: "Run loops over a recorded trace, with no cluster",
		Long: `Run ControlLoops' policies over a recorded trace of metrics, one tick a line
(JSON lines: {"time": ..., "metrics": {"name": number or {"value": ...}},
"targets": {...}}), with no cluster: the controller's own tick builds the input,
decides, guards (bounds, steps, cooldowns, stale metrics) and carries state,
history and overrides from tick to tick, while the targets are simulated.
Give a Deliberative loop together with the loop it supervises.

Prints a table, one line per loop tick, and writes a plot (PNG) and the
decision history (JSON lines).`,
		Example: `  governor replay --loop test/traces/factory-qos/loop.yaml --trace test/traces/factory-qos/trace.jsonl
  governor replay --loop test/traces/factory-scaling/scaling.yaml --loop test/traces/factory-scaling/priorities.yaml \
    --trace test/traces/factory-scaling/trace.jsonl --plot scaling.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var loops []*v1alpha1.ControlLoop
			for _, f := range loopFiles {
				l, err := replay.ReadLoop(f)
				if err != nil {
					return err
				}
				loops = append(loops, l)
			}
			f, err := os.Open(traceFile)
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }() // only read: closing cannot lose anything
			trace, err := replay.ReadTrace(f, traceFile)
			if err != nil {
				return err
			}
			registry, err := bundles.LoadRegistry(cmd.Context(), bundleDir)
			if err != nil {
				return err
			}
			rows, err := replay.Run(cmd.Context(), registry, loops, trace)
			if err != nil {
				return err
			}
			if err := replay.WriteTable(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			if err := replay.Plot(plotFile, "governor replay of "+filepath.Base(traceFile), rows); err != nil {
				return err
			}
			if err := jsonl.Write(historyFile, replay.History(rows)); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.ErrOrStderr(), "%d ticks of %d loop(s); plot %s, history %s\n", len(trace), len(loops), plotFile, historyFile)
			return err
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&loopFiles, "loop", nil, "ControlLoop manifest (repeat for a Deliberative loop and the loop it supervises)")
	f.StringVar(&traceFile, "trace", "", "trace: JSON lines, one tick each")
	f.StringVar(&bundleDir, "bundles", "policies", "directory of policy bundles")
	f.StringVar(&plotFile, "plot", "replay.png", "plot to write (PNG)")
	f.StringVar(&historyFile, "history", "replay-history.jsonl", "decision history to write (JSON lines)")
	_ = cmd.MarkFlagRequired("loop")
	_ = cmd.MarkFlagRequired("trace")
	return cmd
}
