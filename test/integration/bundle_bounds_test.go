//go:build integration

package integration

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/deployed"
	"governor.dev/governor/test/testkeys"
)

// TestDownloadedBundleBounds: governor run follows a signed bundle on the
// long-polling bundle server, over HTTPS, with a size limit of 8 MiB. Three
// hostile revisions are each refused at read with a one-line reason in the
// loop's BundleHealthy condition, status and history, and in the refusals
// metric, while revision 1 goes on deciding: a gzip bomb of 256 files of
// 4 MiB (1 GiB, each file under the limit, in about 1 MiB), one of a single
// 1 GiB file, and a transfer over the limit. The process's peak RSS grows
// by far less than one bomb. Then the signed revision 2 goes live.
func TestDownloadedBundleBounds(t *testing.T) {
	const limit = 8 << 20
	e := newEnv(t)
	key := testkeys.RSA(t)
	srv := bundleserver.New()
	srv.Publish("fleet.tar.gz", fleetTarball(t, "1", good, key))
	url, ca := srv.StartTLS(t)
	config := filepath.Join(t.TempDir(), "opa.yaml")
	require.NoError(t, os.WriteFile(config, []byte(opaConfig(service{url, ca}, key,
		"{min_delay_seconds: 1, max_delay_seconds: 1, long_polling_timeout_seconds: 10}", nil)), 0o644))

	metrics := deployed.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(governorBinary(t), "run", "--opa-config", config, "--kubeconfig", e.api.Kubeconfig,
		"--leader-elect=false", "--health-probe-bind-address", deployed.FreeAddr(t), "--metrics-bind-address", metrics,
		"--metrics-secure=false", "--push-bind-address", "0", "--max-bundle-file-bytes", strconv.Itoa(limit))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})

	ns := e.namespace(t)
	e.loop(t, ns, "a", fleetSpec(""))
	decidesWith := func(rev string) {
		t.Helper()
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			h, desc := lastEntry(l)
			c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
			return h.Revision == rev && h.Error == "" && c != nil && c.Status == metav1.ConditionTrue, desc
		})
	}
	decidesWith("fleet@1")
	before := peakRSS(t, cmd.Process.Pid)

	noise := make([]byte, limit+1<<20)
	_, _ = rand.Read(noise)
	for _, bad := range []struct {
		name    string
		tarball []byte
		want    string
	}{
		{"256 files of 4 MiB", bundleserver.ManyFilesBomb(t, "2", 256, 4<<20),
			"bundle fleet refused at read: bundle files total more than 8388608 bytes (the size limit of a whole bundle) with d1/data.json"},
		{"one file of 1 GiB", bundleserver.GzipBomb(t, "3", 1<<30),
			"bundle fleet refused at read: bundle read failed: bundle file /data.json size (1073741824 bytes) exceeds configured size_limit_bytes (8388608 bytes)"},
		{"9 MiB of noise", noise,
			"bundle fleet refused at read: its transfer is 9437184 bytes (compressed), more than 8388608 (the size limit of a whole bundle)"},
	} {
		t.Logf("%s: %d KiB compressed", bad.name, len(bad.tarball)>>10)
		tick := e.get(t, ns, "a").Status.Tick
		srv.Publish("fleet.tar.gz", bad.tarball)
		eventually(t, 30*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			c := meta.FindStatusCondition(l.Status.Conditions, v1alpha1.ConditionBundleHealthy)
			refused := c != nil && c.Status == metav1.ConditionFalse && c.Reason == "RevisionRefused" &&
				strings.Contains(c.Message, bad.want) && strings.Contains(c.Message, "(deciding with: fleet@1)") &&
				!strings.Contains(c.Message, "\n") && l.Status.Bundle != nil && l.Status.Bundle.LastError == bad.want
			noted := slices.ContainsFunc(l.Status.History, func(h v1alpha1.HistoryEntry) bool {
				return slices.Contains(h.Guard, "Bundle: "+bad.want)
			})
			return refused && noted, fmt.Sprintf("%s: %v; noted in the history: %t", bad.name, c, noted)
		})
		eventually(t, 10*time.Second, func() (bool, string) {
			l := e.get(t, ns, "a")
			h, desc := lastEntry(l)
			return l.Status.Tick > tick+2 && h.Revision == "fleet@1" && h.Error == "" && l.Status.Phase == v1alpha1.PhaseRunning,
				fmt.Sprintf("%s: the loop must keep deciding with fleet@1: %s", bad.name, desc)
		})
	}
	after := peakRSS(t, cmd.Process.Pid)
	t.Logf("peak RSS of governor run: %d MiB before the bombs, %d MiB after", before>>20, after>>20)
	assert.Less(t, after-before, int64(128<<20), "refusing bombs of 1 GiB grew the peak RSS by %d MiB", (after-before)>>20)
	_, body := httpGet(t, "http://"+metrics+"/metrics")
	assert.Contains(t, body, "\n"+`governor_bundle_refusals_total{bundle="fleet",step="read"} 3`+"\n")

	srv.Publish("fleet.tar.gz", fleetTarball(t, "4", good, key))
	decidesWith("fleet@4")
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no VmHWM", pid)
	return 0
}
