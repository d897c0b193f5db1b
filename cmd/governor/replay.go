package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/controller/replay"
	"governor.dev/governor/internal/jsonl"
)

// replayFailed is governor replay's exit code when the replay ran but a
// tick failed to decide, a decision was rejected or an expectation did not
// hold: distinct from 1 (it could not run) and 2 (governor test's failures).
const replayFailed = 3

type replayOptions struct {
	loopFiles   []string
	traceFile   string
	bundleDir   string
	bundleDirs  []string
	plotFile    string
	historyFile string
	expectFile  string
	tick        int64
	printInput  bool
	inputOf     string
}

func newReplayCommand() *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay --loop FILE [--loop FILE...] --trace FILE",
		Short: "Run loops over a recorded trace, with no cluster, as a test",
		Long: `Run ControlLoops' policies over a recorded trace of metrics, one tick a line
(JSON lines: {"time": ..., "metrics": {"name": number or {"value": ...}},
"targets": {...}}), with no cluster: the controller's own tick builds the input,
decides, guards (bounds, steps, cooldowns, stale metrics) and carries state,
history and overrides from tick to tick, while the targets are simulated.
Give a Deliberative loop together with the loop it supervises. Each loop is
checked as the API server would check it (the CRD's schema and CEL rules).

Prints a table, one line per loop tick; writes a plot (--plot, PNG) and the
history with each tick's input and state (--history, JSON lines) only when
asked. --tick N --print-input prints tick N's input document instead, for
'governor eval' or a test.

Exits 3, with one line per failure naming the tick, when a tick failed to
decide, a decision was rejected, or a line of --expect FILE does not hold;
1 when it cannot run at all.`,
		Example: `  governor replay --loop test/traces/factory-qos/loop.yaml --trace test/traces/factory-qos/trace.jsonl
  governor replay --loop test/traces/factory-scaling/scaling.yaml --loop test/traces/factory-scaling/priorities.yaml \
    --trace test/traces/factory-scaling/trace.jsonl --plot scaling.png
  governor replay --bundle api=./api --loop api/loop.yaml --trace api/trace.jsonl --expect api/expect.jsonl
  governor replay --bundle api=./api --loop api/loop.yaml --trace api/trace.jsonl --tick 4 --print-input > input.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.printInput != cmd.Flags().Changed("tick") {
				return errors.New("--print-input and --tick N go together")
			}
			return runReplay(cmd, o, cmd.Flags().Changed("bundles") || len(o.bundleDirs) == 0)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.loopFiles, "loop", nil, "ControlLoop manifest (repeat for a Deliberative loop and the loop it supervises)")
	f.StringVar(&o.traceFile, "trace", "", "trace: JSON lines, one tick each")
	f.StringVar(&o.bundleDir, "bundles", "policies", "directory of policy bundles (not read when only --bundle is given)")
	f.StringArrayVar(&o.bundleDirs, "bundle", nil, "NAME=DIR: one bundle directory or tarball under NAME, built in memory (repeatable)")
	f.StringVar(&o.plotFile, "plot", "", "plot to write (PNG)")
	f.StringVar(&o.historyFile, "history", "", "history to write, with each tick's input and state (JSON lines)")
	f.StringVar(&o.expectFile, "expect", "", "expectations (JSON lines: tick or time, then targets, events, actions or no_action)")
	f.Int64Var(&o.tick, "tick", 0, "with --print-input: the loop tick whose input to print")
	f.BoolVar(&o.printInput, "print-input", false, "print the input document of --tick N as JSON, instead of the table")
	f.StringVar(&o.inputOf, "input-of", "", "with --print-input: the loop, when the replay has several")
	_ = cmd.MarkFlagRequired("loop")
	_ = cmd.MarkFlagRequired("trace")
	return cmd
}

func runReplay(cmd *cobra.Command, o replayOptions, readBundleDir bool) error {
	var loops []*v1alpha1.ControlLoop
	for _, f := range o.loopFiles {
		l, err := replay.ReadLoop(f)
		if err != nil {
			return err
		}
		loops = append(loops, l)
	}
	trace, err := readTrace(o.traceFile)
	if err != nil {
		return err
	}
	expectations, err := readExpectations(o.expectFile)
	if err != nil {
		return err
	}
	registry, err := replayRegistry(cmd.Context(), o, readBundleDir)
	if err != nil {
		return err
	}
	rows, err := replay.Run(cmd.Context(), registry, loops, trace)
	if err != nil {
		return err
	}
	if o.printInput {
		input, err := replay.InputOf(rows, o.inputOf, o.tick)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(input)
	}
	if err := replay.WriteTable(cmd.OutOrStdout(), rows); err != nil {
		return err
	}
	wrote, err := writeOutputs(o, rows)
	if err != nil {
		return err
	}
	failures := replay.Failures(rows, expectations)
	summary := fmt.Sprintf("%d ticks of %d loop(s)", len(trace), len(loops))
	if len(expectations) > 0 {
		summary += fmt.Sprintf(", %d expectation(s)", len(expectations))
	}
	if len(wrote) > 0 {
		summary += "; " + strings.Join(wrote, ", ")
	}
	for _, f := range failures {
		if _, err := fmt.Fprintln(cmd.ErrOrStderr(), "FAIL "+f); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(cmd.ErrOrStderr(), summary); err != nil {
		return err
	}
	if len(failures) > 0 {
		return &exitError{code: replayFailed, err: fmt.Errorf("replay failed: %d failure(s), the first: %s", len(failures), failures[0])}
	}
	return nil
}

// writeOutputs writes the plot and history asked for, and says what it wrote.
func writeOutputs(o replayOptions, rows []replay.Row) ([]string, error) {
	var wrote []string
	if o.plotFile != "" {
		if err := replay.Plot(o.plotFile, "governor replay of "+filepath.Base(o.traceFile), rows); err != nil {
			return nil, err
		}
		wrote = append(wrote, "plot "+o.plotFile)
	}
	if o.historyFile != "" {
		if err := jsonl.Write(o.historyFile, replay.History(rows)); err != nil {
			return nil, err
		}
		wrote = append(wrote, "history "+o.historyFile)
	}
	return wrote, nil
}

// readExpectations reads --expect FILE; none without it.
func readExpectations(path string) ([]replay.Expectation, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // only read: closing cannot lose anything
	return replay.ReadExpectations(f, path)
}

func readTrace(path string) ([]replay.Tick, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // only read: closing cannot lose anything
	return replay.ReadTrace(f, path)
}

// replayRegistry holds the bundles of --bundles (unless only --bundle is
// given) and each --bundle NAME=DIR.
func replayRegistry(ctx context.Context, o replayOptions, readBundleDir bool) (*bundles.Registry, error) {
	registry := bundles.NewRegistry()
	if readBundleDir {
		if err := registry.AddDir(ctx, o.bundleDir); err != nil {
			return nil, err
		}
	}
	for _, nd := range o.bundleDirs {
		name, dir, ok := strings.Cut(nd, "=")
		if !ok || name == "" || dir == "" {
			return nil, fmt.Errorf("--bundle %q: want NAME=DIR", nd)
		}
		if err := registry.AddBundle(ctx, name, dir); err != nil {
			return nil, fmt.Errorf("--bundle %s: %w", nd, err)
		}
	}
	return registry, nil
}
