//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/controller"
)

// stepper wants every target at the far end of its replicas bounds (10
// below 5, 1 from 5 up): the guard lets it move one step per cooldown, so
// each target changes once per cooldown, forever.
const stepper = `package test.stepper

decision := {"actions": [{"target": name, "set": {"replicas": want(t.replicas)}} | some name, t in input.targets]}

want(n) := 10 if n < 5

want(n) := 1 if n >= 5
`

// change is a value of a target's replicas as a watch saw it arrive.
type change struct {
	replicas int32
	at       time.Time
}

// TestCooldownsSurviveSIGKILL kills the real binary at random moments, 30
// times, while its loops act once per cooldown on every target, and checks
// each target's changes as the API server shows them: never two within a
// cooldown, never more than one step, never out of bounds. Half the kills
// come just after a change was seen, when the controller is most likely
// between acting and recording it.
func TestCooldownsSurviveSIGKILL(t *testing.T) {
	const (
		kills    = 30
		cooldown = 3 * time.Second
		// slack is how much closer than the cooldown two changes may be
		// seen, with no crash: the cooldown runs from the tick that decided
		// a change, which lands after the tick's reads and its status write
		// (slower on a loaded machine), and a watch delivers changes late by
		// different amounts. A second step after a restart lands within
		// about a second of the first: far inside this.
		slack = time.Second
	)
	e := newEnv(t)
	ctx := context.Background()
	ns := e.namespace(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "stepper"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stepper", "policy.rego"), []byte(stepper), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stepper", ".manifest"), []byte(`{"revision": "stepper-1", "roots": ["test/stepper"]}`), 0o644))

	var names []string
	for l := range 2 {
		var targets []v1alpha1.TargetSpec
		for i := range 4 {
			name := fmt.Sprintf("app-%d-%d", l, i)
			e.deployment(t, ns, name, 3)
			target := deploymentTarget(name, name)
			target.Replicas = &v1alpha1.ReplicaBounds{Min: 1, Max: 10, MaxStep: 1}
			targets = append(targets, target)
			names = append(names, name)
		}
		spec := echoSpec(`{}`, targets...)
		spec.Policy.Bundle, spec.Policy.Decision, spec.Policy.Params = "stepper", "test/stepper/decision", nil
		spec.Interval = metav1.Duration{Duration: 100 * time.Millisecond}
		spec.Safety.Cooldown = metav1.Duration{Duration: cooldown}
		e.loop(t, ns, fmt.Sprintf("loop-%d", l), spec)
	}

	wc, err := client.NewWithWatch(e.api.Config, client.Options{Scheme: controller.Scheme()})
	require.NoError(t, err)
	w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns))
	require.NoError(t, err)
	defer w.Stop()
	var mu sync.Mutex
	seen := map[string][]change{}
	changed := make(chan struct{}, 1)
	go func() {
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			mu.Lock()
			h := seen[d.Name]
			if len(h) == 0 || h[len(h)-1].replicas != *d.Spec.Replicas {
				seen[d.Name] = append(h, change{replicas: *d.Spec.Replicas, at: time.Now()})
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			mu.Unlock()
		}
	}()

	bin := governorBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	var logs bytes.Buffer
	for k := range kills {
		cmd := exec.Command(bin, "run", "--bundles", dir, "--kubeconfig", e.api.Kubeconfig, "--leader-elect=false",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--push-bind-address", "0")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		if k%2 == 0 {
			time.Sleep(time.Duration(rnd.Int64N(int64(3 * time.Second))))
		} else {
			// Drain a change seen before this start, then kill right after
			// the next one (or at a random moment, if none comes).
			select {
			case <-changed:
			default:
			}
			select {
			case <-changed:
				time.Sleep(time.Duration(rnd.Int64N(int64(30 * time.Millisecond))))
			case <-time.After(3 * cooldown):
			}
		}
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
	}
	// A last run to its end: the loops must still act.
	cmd := exec.Command(bin, "run", "--bundles", dir, "--kubeconfig", e.api.Kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--push-bind-address", "0")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	time.Sleep(2 * cooldown)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("governor run output:\n%s", logs.String())
		}
	})

	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, name := range names {
		h := seen[name]
		total += len(h) - 1
		for i := 1; i < len(h); i++ {
			prev, cur := h[i-1], h[i]
			assert.LessOrEqual(t, abs32(cur.replicas-prev.replicas), int32(1), "%s: %d -> %d is more than one step", name, prev.replicas, cur.replicas)
			assert.True(t, cur.replicas >= 1 && cur.replicas <= 10, "%s: %d is out of bounds", name, cur.replicas)
			if i == 1 {
				continue // h[0] is the state when the watch began, not a change: the first governor may act at once
			}
			assert.GreaterOrEqual(t, cur.at.Sub(prev.at), cooldown-slack, "%s: %d -> %d only %s after the change before (cooldown %s)",
				name, prev.replicas, cur.replicas, cur.at.Sub(prev.at), cooldown)
		}
	}
	// The loops kept acting through the kills: every target about once per
	// cooldown of the time a controller ran.
	assert.GreaterOrEqual(t, total, 2*len(names), "changes seen across %d kills", kills)
	t.Logf("%d changes of %d targets across %d kills", total, len(names), kills)
}

func abs32(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}
