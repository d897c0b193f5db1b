//go:build integration

package integration

import (
	"bytes"
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// crashRig runs the governor binary against a test's API server one
// process at a time, each ended by SIGKILL: a crash, with nothing flushed
// and nothing handed back. Its random moments come from a seed the test
// logs.
type crashRig struct {
	bin  string
	args []string
	rnd  *rand.Rand
	// runs are the processes' outputs, in order.
	runs [][]byte
}

// newCrashRig makes a rig whose processes run `governor run` on e's API
// server without leader election and without listeners, with args added.
func newCrashRig(t *testing.T, e *env, args ...string) *crashRig {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return &crashRig{
		bin: governorBinary(t),
		args: append([]string{"run", "--kubeconfig", e.api.Kubeconfig, "--leader-elect=false",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--push-bind-address", "0"}, args...),
		rnd: rand.New(rand.NewPCG(seed, 0)),
	}
}

// run starts governor, lets it run until until returns, then kills it with
// SIGKILL and keeps its output.
func (r *crashRig) run(t *testing.T, until func()) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(r.bin, r.args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	until()
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	r.runs = append(r.runs, out.Bytes())
}

// upTo is a random duration from 0 up to d.
func (r *crashRig) upTo(d time.Duration) time.Duration {
	return time.Duration(r.rnd.Int64N(int64(d)))
}
