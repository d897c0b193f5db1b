package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
)

// status.lastAction sums up the last tick that changed something, for
// kubectl get's columns; a quiet tick leaves it as it was.
func TestRecordLastAction(t *testing.T) {
	loop := echoLoop(t, `{}`)
	at := metav1.NewMicroTime(time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC))
	acted := tickResult{entry: v1alpha1.HistoryEntry{Time: at, Tick: 1, Applied: []v1alpha1.Action{
		{Target: "web", Set: apiextensionsv1.JSON{Raw: []byte(`{"replicas":4}`)}},
		{Target: "db", Set: apiextensionsv1.JSON{Raw: []byte(`{"bandwidth":{"egress":"16M"}}`)}},
	}}, phase: v1alpha1.PhaseRunning}
	st, err := record(loop, &v1alpha1.ControlLoopStatus{}, acted, 0)
	require.NoError(t, err)
	require.NotNil(t, st.LastAction)
	assert.Equal(t, `web {"replicas":4}, db {"bandwidth":{"egress":"16M"}}`, st.LastAction.Summary)
	assert.Equal(t, at, st.LastAction.Time)

	quiet := tickResult{entry: v1alpha1.HistoryEntry{Time: metav1.NewMicroTime(at.Add(time.Second)), Tick: 2}, phase: v1alpha1.PhaseRunning}
	st, err = record(loop, st, quiet, 0)
	require.NoError(t, err)
	assert.Equal(t, at, st.LastAction.Time, "a quiet tick keeps the last action")

	deliberative := loop.DeepCopy()
	deliberative.Spec.Supervises = "factory-scaling"
	long := `{"priorities":["` + strings.Repeat("memory", 30) + `"]}`
	params := tickResult{entry: v1alpha1.HistoryEntry{Time: at, Tick: 3, Params: &apiextensionsv1.JSON{Raw: []byte(long)}}}
	st, err = record(deliberative, st, params, 0)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(st.LastAction.Summary, `factory-scaling params {"priorities":["memorymemory`), st.LastAction.Summary)
	assert.LessOrEqual(t, len(st.LastAction.Summary), maxActionSummary)
	assert.True(t, strings.HasSuffix(st.LastAction.Summary, "…"))
}
