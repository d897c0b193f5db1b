package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
	"governor.dev/governor/controller"
)

// Lease timings that client-go's leader election would refuse at start, or
// misread (it records the lease duration in whole seconds), are refused
// with the flag's name.
func TestCheckLease(t *testing.T) {
	require.NoError(t, checkLease(defaultLeaseDuration, defaultRenewDeadline, defaultRetryPeriod))
	require.NoError(t, checkLease(15*time.Second, 10*time.Second, 2*time.Second))
	for _, c := range []struct {
		lease, renew, retry time.Duration
		want                string
	}{
		{1500 * time.Millisecond, time.Second, 100 * time.Millisecond, "--leader-elect-lease-duration must be a whole number of seconds, at least 1s (got 1.5s)"},
		{500 * time.Millisecond, 200 * time.Millisecond, 100 * time.Millisecond, "--leader-elect-lease-duration must be a whole number of seconds"},
		{8 * time.Second, 6 * time.Second, 0, "--leader-elect-retry-period must be above 0 (got 0s)"},
		{8 * time.Second, 8 * time.Second, time.Second, "--leader-elect-renew-deadline (8s) must be below --leader-elect-lease-duration (8s)"},
		{8 * time.Second, 1200 * time.Millisecond, time.Second, "--leader-elect-renew-deadline (1.2s) must be above 1.2 times --leader-elect-retry-period (1s)"},
	} {
		err := checkLease(c.lease, c.renew, c.retry)
		if assert.Error(t, err, "%s %s %s", c.lease, c.renew, c.retry) {
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

// Every flag check speaks of the lease timings in governor run's terms.
func TestRunFlagsCheckLease(t *testing.T) {
	f := runFlags{bundleDir: "policies", qps: 1, burst: 1}
	f.opts.StatusFlush, f.opts.StatusWriteConcurrency = time.Second, 1
	f.opts.LeaseDuration, f.opts.RenewDeadline, f.opts.RetryPeriod = 4*time.Second, 5*time.Second, time.Second
	assert.EqualError(t, f.check(), "--leader-elect-renew-deadline (5s) must be below --leader-elect-lease-duration (4s)")
}

// Status writes need at least one in flight.
func TestRunFlagsCheckStatusWriteConcurrency(t *testing.T) {
	f := runFlags{bundleDir: "policies", qps: 1, burst: 1}
	f.opts.StatusFlush = time.Second
	assert.EqualError(t, f.check(), "--status-write-concurrency must be at least 1 (got 0)")
}

// The push endpoint's limits are refused out of range, with the flag's name.
func TestCheckPush(t *testing.T) {
	var ok controller.Options
	ok.PushLimits = push.Limits{LoopRate: push.DefaultLoopRate, ClientRate: 0, TokenTTL: push.DefaultTokenTTL}
	require.NoError(t, checkPush(ok))
	for _, c := range []struct {
		limits push.Limits
		want   string
	}{
		{push.Limits{LoopRate: -1}, "--push-rate must be a number of requests a second, 0 or more (got -1)"},
		{push.Limits{LoopRate: math.NaN()}, "--push-rate must be a number of requests a second, 0 or more (got NaN)"},
		{push.Limits{ClientRate: math.Inf(1)}, "--push-client-rate must be a number of requests a second, 0 or more (got +Inf)"},
		{push.Limits{TokenTTL: -time.Second}, "--push-token-ttl must be 0 (the default, 30s) or more (got -1s)"},
	} {
		opts := controller.Options{PushLimits: c.limits}
		assert.EqualError(t, checkPush(opts), c.want)
	}
	bad := controller.Options{PushTLS: controller.TLSFiles{Cert: "tls.crt"}}
	assert.EqualError(t, checkPush(bad), "--push-tls-cert and --push-tls-key go together")
}

// An OPA configuration that follows a bundle with no key, or reaches a
// service over http://, stops governor run in one line naming the flag
// that allows it; with the flags, run goes on past the configuration (to
// the kubeconfig, missing here).
func TestRunRefusesUnsignedBundlesAndInsecureServices(t *testing.T) {
	config := filepath.Join(t.TempDir(), "opa.yaml")
	require.NoError(t, os.WriteFile(config, []byte("services: {s: {url: \"http://127.0.0.1:1\"}}\nbundles: {b: {service: s}}\n"), 0o600))
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, `service "s" (http://127.0.0.1:1) is not https://: bundles and decision logs would travel in clear; pass --allow-insecure-bundle-services to allow it`},
		{[]string{"--allow-insecure-bundle-services"}, `bundle "b" (http://127.0.0.1:1/bundles/b): no key to verify its signature: configure keys (and signing), or pass --allow-unsigned-bundles to follow it unsigned`},
		{[]string{"--allow-insecure-bundle-services", "--allow-unsigned-bundles"}, "kubernetes client config"},
	} {
		cmd := newRunCommand()
		cmd.SetArgs(append([]string{"--opa-config", config, "--kubeconfig", filepath.Join(t.TempDir(), "missing")}, c.flags...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		require.Error(t, err, "%v", c.flags)
		assert.Contains(t, err.Error(), c.want, "%v", c.flags)
		assert.NotContains(t, err.Error(), "\n")
	}
}

// A certificate for a metrics endpoint told to serve plain HTTP is a mistake,
// said in the flags' terms.
func TestRunFlagsCheckMetrics(t *testing.T) {
	f := runFlags{bundleDir: "policies", qps: 1, burst: 1}
	f.opts.StatusFlush, f.opts.StatusWriteConcurrency = time.Second, 1
	f.opts.LeaseDuration, f.opts.RenewDeadline, f.opts.RetryPeriod = 8*time.Second, 6*time.Second, time.Second
	f.opts.MetricsServing.CertDir = "/etc/metrics-tls"
	assert.EqualError(t, f.check(), "--metrics-cert-path serves HTTPS: it goes with --metrics-secure, not --metrics-secure=false")
}

// The Go runtime gets 80 % of the container's memory limit: the binary's
// pages the process reads count in the container's memory too. GOMEMLIMIT,
// when set, wins.
func TestBoundHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	boundHeap(memlimit.Limit(512 << 20))
	assert.InDelta(t, 0.8*(512<<20), debug.SetMemoryLimit(-1), 1, "80 % of 512Mi")

	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "300MiB")
	boundHeap(memlimit.Limit(512 << 20))
	assert.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "left to the runtime, which read GOMEMLIMIT at its start")
}
