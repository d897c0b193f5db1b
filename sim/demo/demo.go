// Package demo is `governor demo`: on a machine with no cluster, it starts the local cluster
// the project builds (kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok
// with three fake Nodes, from internal/localcluster), installs the ControlLoop CRD, creates a small
// factory, serves the simulated Hubble Relay with a plant whose jitter follows the egress
// bandwidth granted to the best-effort workloads, runs the controller in-process with three
// loops, shows what they see, decide and change, and at the end writes a report: a plot
// (report.png) and every loop's decision history (history.jsonl).
//
// The factory, in namespace factory: robot-control, the critical workload whose traffic
// must stay smooth; telemetry-upload and video-archive, best-effort, 2 replicas each,
// sharing a link with it; and web, a scaled web tier (2 replicas, container app with
// requests cpu 250m, memory 128Mi, limits memory 512Mi). The loops:
//
//   - factory-qos (Reactive, bundle bandwidth): robot-control's jitter, measured by the
//     Hubble collector over the relay's flows, against a 2 ms target; it lowers or raises the
//     egress bandwidth of telemetry and video, every 500ms, with a 30s cooldown (the
//     deterministic-networking controller's).
//   - factory-scaling (Reactive, bundle reactive): the web tier's cpu and memory load, which
//     the demo reports in status.observations every second (a simulated load, both above
//     their thresholds); it remedies the first violation in its priorities, cpu by a
//     replica, memory by 64Mi, every second with a 2s cooldown. Its priorities are
//     overridable.
//   - factory-priorities (Deliberative, bundle deliberative): supervises factory-scaling;
//     when its last 5 actions all remedied one metric while another was also in violation,
//     it raises that one (at most once per 20s), through factory-scaling's status.overrides.
//
// When the run lasts a minute or more, video-archive scales out partway (a backlog to
// upload: more Pods, more egress, more jitter) and factory-qos reacts again.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"governor.dev/governor/bundles"
	"governor.dev/governor/config/crd"
	"governor.dev/governor/controller"
	"governor.dev/governor/internal/jsonl"
	"governor.dev/governor/internal/localcluster"
	"governor.dev/governor/internal/plot"
	"governor.dev/governor/sim"
	"governor.dev/governor/sim/relay"
)

// Options configures Run.
type Options struct {
	// Duration is how long the loops run once created; 0 is until ctx ends.
	Duration time.Duration
	// ReportDir receives report.png, history.jsonl and logs/ (each component's log, the
	// controller's, and the cluster's admin.kubeconfig); "demo-report" when empty.
	ReportDir string
	// AssetsDir holds the local cluster's binaries (`make envtest-assets`); "bin/k8s" when
	// empty.
	AssetsDir string
	// BundlesDir holds the policy bundles bandwidth, reactive and deliberative; "policies"
	// when empty.
	BundlesDir string
	// Out receives the progress; nothing is shown when nil.
	Out io.Writer
	// Live redraws a status block in place every Refresh (Out is a terminal, Width columns
	// by Height rows when known: the block is cut to fit); otherwise a line is printed per
	// change, and a status line every 10s.
	Live          bool
	Width, Height int
	// Refresh is how often the view is redrawn; 1s when 0.
	Refresh time.Duration
}

// Result is what a run did.
type Result struct {
	// ReportPNG, HistoryJSONL and LogDir are the paths written.
	ReportPNG, HistoryJSONL, LogDir string
	// Interrupted: ctx ended before Duration.
	Interrupted bool
	// Started is when the loops were created, Ended when the run ended.
	Started, Ended time.Time
	// Loops, by name.
	Loops map[string]LoopResult
	// EgressChanges counts factory-qos's ticks that changed an egress bandwidth.
	EgressChanges int
	// Priorities are factory-scaling's effective priorities, each value as long as it held.
	Priorities [][]string
	// Samples is how many times the demo read the factory (about twice a second).
	Samples int
}

// LoopResult is what one loop did.
type LoopResult struct {
	Kind  string
	Phase string
	// Tick is the loop's last tick; Entries the history entries recorded (one per tick).
	Tick    int64
	Entries int
	// Changes counts the ticks that changed something (targets, or the supervised loop's
	// params); Errors the ticks that failed.
	Changes, Errors int
}

const (
	// pollEvery is how often the demo reads the factory and the loops.
	pollEvery = 500 * time.Millisecond
	// observeEvery is how often it reports the web tier's load.
	observeEvery = time.Second
	// readyTimeout bounds the wait for the factory's Pods.
	readyTimeout = 2 * time.Minute
	// stepTimeout bounds one read or write of the API server.
	stepTimeout = 5 * time.Second
)

// Run runs the demo until opts.Duration has passed since the loops were created, or ctx
// ends; then it writes the report and stops everything it started. An error before the
// loops start (ctx ending included) means no report. A Result with an error means the
// report was written but something failed to stop.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	opts, err = withDefaults(opts)
	if err != nil {
		return nil, err
	}
	// What can be checked without starting anything.
	if err := checkAssets(opts.AssetsDir); err != nil {
		return nil, err
	}
	registry, err := loadBundles(ctx, opts.BundlesDir)
	if err != nil {
		return nil, err
	}
	crds, err := crd.CustomResourceDefinitions()
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(opts.ReportDir, "logs")
	logFile, err := openLog(logDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		// The controller's log: a Close that fails may have lost its end.
		if closeErr := logFile.Close(); closeErr != nil {
			err = errors.Join(err, fmt.Errorf("demo: closing %s: %w", logFile.Name(), closeErr))
		}
	}()

	d := &demo{opts: opts, logDir: logDir, registry: registry,
		view: &view{out: opts.Out, live: opts.Live, width: opts.Width, height: opts.Height, duration: opts.Duration,
			kubeconfig: filepath.Join(logDir, "admin.kubeconfig")}}
	defer func() {
		// After a failed start, what failed to stop as well (once the loops ran,
		// cleanup has run below and this is a no-op).
		if stopErr := d.cleanup(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()
	if err := d.start(ctx, crds); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted before the loops started: %w", ctx.Err())
		}
		return nil, err
	}
	res, err = d.run(ctx)
	if stopErr := d.cleanup(); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	if res != nil {
		d.showReport(res)
	}
	return res, err
}

// withDefaults fills in the options left empty, and refuses a negative duration.
func withDefaults(opts Options) (Options, error) {
	if opts.ReportDir == "" {
		opts.ReportDir = "demo-report"
	}
	if opts.AssetsDir == "" {
		opts.AssetsDir = filepath.Join("bin", "k8s")
	}
	if opts.BundlesDir == "" {
		opts.BundlesDir = "policies"
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Refresh <= 0 {
		opts.Refresh = time.Second
	}
	if opts.Duration < 0 {
		return opts, fmt.Errorf("demo: negative duration %v", opts.Duration)
	}
	return opts, nil
}

// checkAssets says, in one line, what of the local cluster is missing from dir and how to
// build it.
func checkAssets(dir string) error {
	err := localcluster.CheckAssets(dir)
	var missing *localcluster.MissingAssetsError
	if !errors.As(err, &missing) {
		return err
	}
	what := missing.Missing
	if len(what) > 3 {
		what = append(what[:3:3], fmt.Sprintf("%d more", len(missing.Missing)-3))
	}
	return fmt.Errorf("the local cluster is not built (%s missing from %s): run make envtest-assets",
		strings.Join(what, ", "), dir)
}

// loadBundles loads the policy bundles of dir, which must hold the three the loops use.
func loadBundles(ctx context.Context, dir string) (*bundles.Registry, error) {
	registry, err := bundles.LoadRegistry(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("loading the policy bundles: %w", err)
	}
	for _, b := range []string{"bandwidth", "reactive", "deliberative"} {
		if !slices.Contains(registry.Names(), b) {
			return nil, fmt.Errorf("bundle %s not found in %s (found %s)", b, dir, strings.Join(registry.Names(), ", "))
		}
	}
	return registry, nil
}

// openLog creates logDir and the controller's log in it, governor.log, where the
// controller's log and client-go's go rather than to the terminal. The caller closes it.
func openLog(logDir string) (*os.File, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(logDir, "governor.log"))
	if err != nil {
		return nil, err
	}
	logger := zap.New(zap.WriteTo(logFile))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger.WithName("klog"))
	return logFile, nil
}

// showReport lists what the run wrote.
func (d *demo) showReport(res *Result) {
	v := d.view
	v.line("")
	v.line("report:")
	v.line("  %-28s jitter, egress, priorities, web replicas and memory over time", res.ReportPNG)
	v.line("  %-28s %d decisions of %s", res.HistoryJSONL, entries(res), strings.Join(Loops, ", "))
	v.line("  %-28s the cluster's components and the controller", res.LogDir+string(filepath.Separator))
}

func entries(res *Result) int {
	n := 0
	for _, l := range res.Loops {
		n += l.Entries
	}
	return n
}

// demo is one run: what it started, to stop it.
type demo struct {
	opts     Options
	logDir   string
	registry *bundles.Registry
	view     *view

	cluster *localcluster.Cluster
	client  client.Client
	plant   *sim.Bandwidth
	relay   *relay.Relay
	rec     *recorder

	stops   []func() error // in start order
	stopped bool

	mgrDone     chan struct{} // closed when the manager has stopped
	mgrErr      error
	stopManager func() error // stops it, once
}

// onStop registers what stops a part, run in reverse order by cleanup.
func (d *demo) onStop(f func() error) { d.stops = append(d.stops, f) }

// cleanup stops everything started, last first, once.
func (d *demo) cleanup() error {
	if d.stopped {
		return nil
	}
	d.stopped = true
	var errs []error
	for i := len(d.stops) - 1; i >= 0; i-- {
		if err := d.stops[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// start brings up the cluster, the plant, the relay, the controller and the factory.
func (d *demo) start(ctx context.Context, crds []*apiextensionsv1.CustomResourceDefinition) error {
	d.view.line("governor demo: a local cluster, a simulated factory and three control loops (report in %s)", d.opts.ReportDir)
	if err := d.startCluster(ctx, crds); err != nil {
		return err
	}
	if err := d.startPlant(); err != nil {
		return err
	}
	if err := d.startRelay(); err != nil {
		return err
	}
	if err := d.startController(); err != nil {
		return err
	}
	if err := d.startFactory(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// startCluster starts the local cluster with the CRDs, and the demo's client of it.
func (d *demo) startCluster(ctx context.Context, crds []*apiextensionsv1.CustomResourceDefinition) error {
	began := time.Now()
	d.view.line("  … starting the local cluster: kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok")
	k, err := localcluster.Launch(ctx, localcluster.LaunchOptions{
		Options:   localcluster.Options{Nodes: 3},
		AssetsDir: d.opts.AssetsDir,
		LogDir:    d.logDir,
		CRDs:      crds,
	})
	if err != nil {
		return fmt.Errorf("starting the local cluster: %w", err)
	}
	d.cluster = k
	d.onStop(func() error {
		if err := k.Stop(); err != nil {
			return fmt.Errorf("stopping the local cluster: %w", err)
		}
		return nil
	})
	d.view.line("  ✓ local cluster up in %s: %d fake Nodes (%s); ControlLoop CRD installed",
		time.Since(began).Round(100*time.Millisecond), len(k.Nodes), strings.Join(k.Nodes, ", "))

	d.client, err = client.New(k.Config, client.Options{Scheme: controller.Scheme()})
	return err
}

// startPlant starts the plant: it reads the best-effort Deployments and their Pods.
func (d *demo) startPlant() error {
	var err error
	d.plant, err = sim.NewBandwidth(sim.BandwidthConfig{
		Client: d.client, Namespace: Namespace,
		Selector: labels.SelectorFromSet(labels.Set{classLabel: bestEffort}),
		Capacity: linkCapacity, Mean: meanLatency, BaseJitter: baseJitter, Gain: jitterGain,
	})
	if err != nil {
		return err
	}
	plantCtx, stopPlant := context.WithCancel(context.Background())
	plantDone := make(chan struct{})
	go func() {
		defer close(plantDone)
		_ = d.plant.Run(plantCtx)
	}()
	d.onStop(func() error { stopPlant(); <-plantDone; return nil })
	return nil
}

// startRelay serves the simulated Hubble Relay: robot-control's traffic, its latencies
// drawn from the plant.
func (d *demo) startRelay() error {
	d.relay = relay.New(relay.Config{Seed: 1, Routes: []relay.Route{{
		Source:      relay.Workload{Namespace: Namespace, Name: "plc-gateway", Labels: map[string]string{"app": "plc-gateway"}},
		Destination: relay.Workload{Namespace: Namespace, Name: Critical, Labels: map[string]string{"app": Critical}, Pods: 2},
		Plant:       d.plant,
		Rate:        flowRate,
	}}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- d.relay.Serve(lis) }()
	if err := waitServing(d.relay, lis.Addr().String(), served); err != nil {
		return err
	}
	d.onStop(func() error {
		d.relay.Stop()
		if err := <-served; err != nil {
			return fmt.Errorf("simulated Hubble Relay: %w", err)
		}
		return nil
	})
	d.view.line("  ✓ simulated Hubble Relay on %s: %s's traffic, %d exchanges/s, jitter from the link's load",
		d.relay.Addr(), Critical, flowRate)
	return nil
}

// startController runs the controller in-process, on the cluster and the relay.
func (d *demo) startController() error {
	mgr, err := controller.NewManager(d.cluster.Config, controller.Options{
		Bundles:     d.registry,
		HubbleRelay: d.relay.Addr(),
		MetricsAddr: "0", ProbeAddr: "0", PushAddr: "0",
	})
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	d.mgrDone = make(chan struct{})
	go func() {
		defer close(d.mgrDone)
		d.mgrErr = mgr.Start(mgrCtx)
	}()
	d.stopManager = sync.OnceValue(func() error {
		stopMgr()
		<-d.mgrDone
		if d.mgrErr != nil {
			return fmt.Errorf("controller: %w", d.mgrErr)
		}
		return nil
	})
	d.onStop(d.stopManager)
	d.view.line("  ✓ controller running in-process, bundles %s from %s", strings.Join(d.registry.Names(), ", "), d.opts.BundlesDir)
	return nil
}

// startFactory creates the factory's Deployments and waits for their Pods.
func (d *demo) startFactory(ctx context.Context) error {
	began := time.Now()
	if err := createFactory(ctx, d.client); err != nil {
		return err
	}
	pods, err := d.waitReady(ctx)
	if err != nil {
		return err
	}
	d.view.line("  ✓ factory: %s, %s, %s, %s: %d Pods Running in %s",
		Critical, Telemetry, Video, Web, pods, time.Since(began).Round(100*time.Millisecond))
	return nil
}

// waitServing waits until the relay serves on addr.
func waitServing(r *relay.Relay, addr string, served <-chan error) error {
	deadline := time.Now().Add(5 * time.Second)
	for r.Addr() != addr {
		select {
		case err := <-served:
			return fmt.Errorf("simulated Hubble Relay: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("simulated Hubble Relay: not serving on %s after 5s", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// waitReady waits until every Deployment of the factory has all its replicas ready, and
// returns how many Pods that is.
func (d *demo) waitReady(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var why string
	for {
		var deps appsv1.DeploymentList
		err := d.client.List(ctx, &deps, client.InNamespace(Namespace))
		ready, pods := err == nil && len(deps.Items) == len(workloads), 0
		why = fmt.Sprint(err)
		for _, dep := range deps.Items {
			want := int32(1)
			if dep.Spec.Replicas != nil {
				want = *dep.Spec.Replicas
			}
			pods += int(dep.Status.ReadyReplicas)
			if dep.Status.ReadyReplicas != want || dep.Status.ObservedGeneration < dep.Generation {
				ready = false
				why = fmt.Sprintf("%s: %d of %d ready", dep.Name, dep.Status.ReadyReplicas, want)
			}
		}
		if ready {
			return pods, nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, fmt.Errorf("the factory's Pods are not ready after %v (%s); see %s", readyTimeout, why, d.logDir)
			}
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// run creates the loops and follows them until the duration has passed or ctx ends, then
// stops the controller and writes the report.
func (d *demo) run(ctx context.Context) (*Result, error) {
	if err := d.createLoops(ctx); err != nil {
		return nil, err
	}
	// The run's clock starts once the loops exist.
	start := time.Now()
	d.view.start = start
	d.rec = newRecorder(d.client, d.plant)
	d.rec.start = start
	backlog := backlogAt(d.opts.Duration)
	d.announce(backlog)

	load := d.startLoad(start)
	defer load.stop()
	res := &Result{Started: start, Loops: map[string]LoopResult{}}
	runErr := d.follow(ctx, res, load, backlog)
	res.Ended = time.Now()

	// Stop the load and the controller first: a stopping controller writes the status it
	// has not written yet, which the last read then records.
	load.stop()
	if runErr == nil {
		if err := d.stopManager(); err != nil {
			runErr = err
		}
	}
	s := d.poll(load)
	d.view.render(d.rec, s, res.Ended, d.cluster.Err())
	d.view.end()

	if err := d.writeReport(res); err != nil {
		return nil, errors.Join(runErr, err)
	}
	return res, runErr
}

// createLoops creates the three loops.
func (d *demo) createLoops(ctx context.Context) error {
	for _, l := range loops() {
		cctx, cancel := context.WithTimeout(ctx, stepTimeout)
		err := d.client.Create(cctx, l)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted before the loops started: %w", ctx.Err())
			}
			return fmt.Errorf("creating loop %s: %w", l.Name, err)
		}
	}
	return nil
}

// announce says what runs, for how long, and what happens when.
func (d *demo) announce(backlog time.Duration) {
	v := d.view
	until := "until Ctrl-C"
	if d.opts.Duration > 0 {
		until = "for " + d.opts.Duration.String() + " (Ctrl-C ends it sooner)"
	}
	v.line("  ✓ loops %s (bandwidth), %s (reactive), %s (deliberative, supervises %s): running %s",
		LoopQoS, LoopScaling, LoopPriorities, LoopScaling, until)
	if backlog > 0 {
		v.line("    at %s: %s scales out to %d replicas (a backlog to upload)", fmtDuration(backlog), Video, backlogReplicas)
	}
	v.line("")
	if !v.live {
		v.line("time since the loops started, what changed; a status line every %s", statusEvery)
	}
}

// follow reads and shows the factory every pollEvery until the duration has passed
// (res.Interrupted when ctx ends first), or the controller stops (an error); the video
// backlog arrives on the way.
func (d *demo) follow(ctx context.Context, res *Result, load *webLoad, backlog time.Duration) error {
	var end <-chan time.Time
	if d.opts.Duration > 0 {
		timer := time.NewTimer(d.opts.Duration)
		defer timer.Stop()
		end = timer.C
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var lastRender time.Time
	backlogDone := backlog == 0
	for {
		select {
		case <-ctx.Done():
			res.Interrupted = true
			return nil
		case <-end:
			return nil
		case <-d.mgrDone:
			return fmt.Errorf("the controller stopped: %w", d.mgrErr)
		case <-tick.C:
		}
		now := time.Now()
		if !backlogDone && now.Sub(res.Started) >= backlog {
			backlogDone = true
			d.scaleOutVideo(now)
		}
		s := d.poll(load)
		if now.Sub(lastRender) >= d.opts.Refresh-pollEvery/2 {
			d.view.render(d.rec, s, now, d.cluster.Err())
			lastRender = now
		}
	}
}

// scaleOutVideo is the scenario's backlog: video-archive scales out, and notes it.
func (d *demo) scaleOutVideo(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := scale(ctx, d.client, Video, backlogReplicas); err != nil {
		d.rec.note(now, "scenario: scaling %s: %v", Video, err)
		return
	}
	d.rec.note(now, "%-19s scaled out to %d replicas by the demo: a backlog to upload", Video, backlogReplicas)
}

// poll reads the factory and the loops once, with the load last reported, and records a
// sample.
func (d *demo) poll(load *webLoad) sample {
	d.rec.setLoad(load.last())
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	return d.rec.poll(ctx, time.Now())
}

// writeReport writes the plot and the history, and fills in the result.
func (d *demo) writeReport(res *Result) error {
	res.LogDir = d.logDir
	res.ReportPNG = filepath.Join(d.opts.ReportDir, "report.png")
	res.HistoryJSONL = filepath.Join(d.opts.ReportDir, "history.jsonl")
	d.summarize(res)
	if err := plot.WritePNG(res.ReportPNG, d.title(res), d.rec.panels()); err != nil {
		return err
	}
	records := d.rec.records()
	anys := make([]any, len(records))
	for i := range records {
		anys[i] = records[i]
	}
	return jsonl.Write(res.HistoryJSONL, anys)
}

// webLoad reports the web tier's scripted load in status.observations every
// observeEvery, from a goroutine of its own, and keeps what it last reported.
type webLoad struct {
	mu          sync.Mutex
	cpu, memory float64

	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

// startLoad starts reporting the load, scripted from start on.
func (d *demo) startLoad(start time.Time) *webLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &webLoad{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTicker(observeEvery)
		defer t.Stop()
		for {
			l.report(ctx, d.client, start)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return l
}

// report writes the load of now once; it keeps it when the write succeeded.
func (l *webLoad) report(ctx context.Context, c client.Client, start time.Time) {
	now := time.Now()
	cpu, memory := load(now.Sub(start))
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := observe(ctx, c, cpu, memory, now); err == nil {
		l.mu.Lock()
		l.cpu, l.memory = cpu, memory
		l.mu.Unlock()
	}
}

// last is the load last reported (0, 0 before the first report).
func (l *webLoad) last() (cpu, memory float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cpu, l.memory
}

// stop stops the reports and waits for the goroutine; it may be called again.
func (l *webLoad) stop() {
	l.cancel()
	<-l.done
}

func (d *demo) title(res *Result) string {
	return fmt.Sprintf("governor demo, %s: factory-qos, factory-scaling and factory-priorities (%s)",
		res.Started.Format("2006-01-02 15:04"), fmtDuration(res.Ended.Sub(res.Started)))
}

// summarize fills the result from what was recorded.
func (d *demo) summarize(res *Result) {
	for _, name := range Loops {
		lr := LoopResult{}
		if l := d.rec.loops[name]; l != nil {
			lr.Kind, lr.Phase, lr.Tick = string(l.Spec.Kind), string(l.Status.Phase), l.Status.Tick
		}
		for _, e := range d.rec.entries(name) {
			lr.Entries++
			if len(e.Applied) > 0 || paramsOf(e) != "" {
				lr.Changes++
			}
			if e.Error != "" {
				lr.Errors++
			}
			if name == LoopQoS && len(e.Applied) > 0 {
				res.EgressChanges++
			}
		}
		res.Loops[name] = lr
	}
	for _, s := range d.rec.samples {
		if len(s.Priorities) == 0 {
			continue
		}
		if n := len(res.Priorities); n == 0 || !slices.Equal(res.Priorities[n-1], s.Priorities) {
			res.Priorities = append(res.Priorities, s.Priorities)
		}
	}
	res.Samples = len(d.rec.samples)
}
