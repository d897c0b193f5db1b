//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/bundleserver"
	"governor.dev/governor/test/deployed"
)

// TestStandbyGatesOnTheLoopsLastInputs runs two governor binaries following
// a bundle server, one leading, one standing by: a revision that passes its
// own tests but runs past the loop's time limit on the loop's real input is
// refused at evaluate by both, the standby included, which runs no loop and
// makes the loop's decision again on the input the leader recorded in the
// loop's status. Both keep the revision before it, so a failover would
// not bring the hostile one in.
func TestStandbyGatesOnTheLoopsLastInputs(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t)
	srv := bundleserver.New()
	srv.Publish("hostile.tar.gz", hostileTarball(t, "1", "good"))
	url := srv.Start(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "opa.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`services: {s: {url: "`+url+`"}}
bundles:
  hostile:
    service: s
    resource: hostile.tar.gz
    polling: {min_delay_seconds: 1, max_delay_seconds: 1, long_polling_timeout_seconds: 10}
`), 0o644))

	bin := governorBinary(t)
	start := func(name string) (metrics string) {
		probe, metrics := deployed.FreeAddr(t), deployed.FreeAddr(t)
		out, err := os.Create(filepath.Join(dir, name+".log"))
		require.NoError(t, err)
		cmd := exec.Command(bin, "run", "--opa-config", config, "--allow-unsigned-bundles", "--allow-insecure-bundle-services", "--kubeconfig", e.api.Kubeconfig,
			"--leader-elect", "--leader-election-namespace", ns,
			"--health-probe-bind-address", probe, "--metrics-bind-address", metrics, "--push-bind-address", "0", "--metrics-secure=false")
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = out.Close()
			if t.Failed() {
				raw, _ := os.ReadFile(out.Name())
				t.Logf("replica %s:\n%s", name, raw)
			}
		})
		eventually(t, 60*time.Second, func() (bool, string) {
			code, body := httpGet(t, "http://"+probe+"/readyz")
			return code == 200, fmt.Sprintf("replica %s /readyz: %d %s", name, code, body)
		})
		return metrics
	}
	bundleOf := func(metrics string) v1alpha1.BundleStatus {
		_, body := httpGet(t, "http://"+metrics+"/bundles")
		var list []v1alpha1.BundleStatus
		if json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 {
			return v1alpha1.BundleStatus{LastError: "GET /bundles: " + body}
		}
		return list[0]
	}

	leader := start("leader")
	spec := echoSpec(`{}`)
	spec.Policy.Bundle, spec.Policy.Decision = "hostile", "hostile/decision"
	spec.Policy.Params = &apiextensionsv1.JSON{Raw: []byte(`{"x": 1}`)}
	spec.Policy.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	e.loop(t, ns, "a", spec)
	eventually(t, 60*time.Second, func() (bool, string) {
		l := e.get(t, ns, "a")
		h, desc := lastEntry(l)
		return h.Revision == "hostile@1" && joined(h.Events) == "x=1" && l.Status.LastInput != nil, desc
	})
	standby := start("standby")
	require.Equal(t, "hostile@1", bundleOf(standby).ActiveRevision)

	srv.Publish("hostile.tar.gz", hostileTarball(t, "2", "spins on the loop's input"))
	want := "refused at evaluate: on loop " + ns + "/a's last input: evaluating hostile/decision in hostile@2: stopped after its time limit of 300ms"
	for name, metrics := range map[string]string{"leader": leader, "standby": standby} {
		eventually(t, 60*time.Second, func() (bool, string) {
			st := bundleOf(metrics)
			return st.ActiveRevision == "hostile@1" && strings.Contains(st.LastError, want), fmt.Sprintf("%s: %+v", name, st)
		})
	}
	// The standby ran no loop: every tick was the leader's, on hostile@1.
	for _, h := range e.get(t, ns, "a").Status.History {
		require.Equal(t, "hostile@1", h.Revision)
	}
}
