//go:build integration

package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
)

// A new observation wakes its loop: a loop ticking once a minute decides
// on a push within moments, sees the metric as new on that tick only, and
// goes back to its interval.
func TestObservationsWakeTheirLoop(t *testing.T) {
	e := newEnv(t)
	ns := e.namespace(t)
	e.startManager(t)
	e.loop(t, ns, "slow", v1alpha1.ControlLoopSpec{
		Kind: v1alpha1.Reactive, State: v1alpha1.Running,
		Interval:   metav1.Duration{Duration: time.Minute},
		Policy:     v1alpha1.PolicySpec{Bundle: "newness", Decision: "test/newness/decision"},
		Collectors: []v1alpha1.CollectorSpec{{Name: "load", Push: &v1alpha1.PushCollector{TokenSecret: "unused"}}},
		Safety:     v1alpha1.SafetySpec{StaleAfter: metav1.Duration{Duration: 15 * time.Second}},
	})
	events := func(tick int64) []string {
		for _, h := range e.get(t, ns, "slow").Status.History {
			if h.Tick == tick {
				return h.Events
			}
		}
		return nil
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		return events(1) != nil, "waiting for the first tick"
	})
	if got := events(1); !slices.Equal(got, []string{"load new=false value=null"}) {
		t.Fatalf("first tick, nothing pushed: %v", got)
	}

	for i, value := range []string{"7", "9"} {
		e.observe(t, ns, "slow", "load", value, time.Now())
		tick := int64(2 + i)
		eventually(t, 20*time.Second, func() (bool, string) {
			return events(tick) != nil, fmt.Sprintf("waiting for tick %d, woken by the push of %s (the interval is a minute)", tick, value)
		})
		if got, want := events(tick), "load new=true value="+value; !slices.Equal(got, []string{want}) {
			t.Fatalf("tick %d: %v, want [%s]", tick, got, want)
		}
	}
	l := e.get(t, ns, "slow")
	if l.Status.Tick != 3 {
		t.Fatalf("ticks = %d, want 3: one at the start, one per push", l.Status.Tick)
	}
}
