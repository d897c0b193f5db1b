package controller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"governor.dev/governor/api/v1alpha1"
)

// The status keeps what was applied to External targets, merged, and nothing of workloads'
// (their objects hold their state).
func TestRecordApplied(t *testing.T) {
	loop := &v1alpha1.ControlLoop{Spec: v1alpha1.ControlLoopSpec{Targets: []v1alpha1.TargetSpec{
		{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"}},
		{Name: "egress", Ref: v1alpha1.TargetRef{Kind: v1alpha1.TargetExternal, Name: "lupus"}},
	}}}
	set := func(raw string) apiextensionsv1.JSON { return apiextensionsv1.JSON{Raw: []byte(raw)} }
	st := &v1alpha1.ControlLoopStatus{}
	recordApplied(st, loop, []v1alpha1.Action{
		{Target: "web", Set: set(`{"replicas": 3}`)},
		{Target: "egress", Set: set(`{"external": {"rate": 60, "ratio": 0.5}}`)},
	})
	recordApplied(st, loop, []v1alpha1.Action{{Target: "egress", Set: set(`{"external": {"rate": 80}}`)}})
	require.Len(t, st.Targets, 1)
	assert.Equal(t, "egress", st.Targets[0].Name)
	assert.JSONEq(t, `{"external": {"rate": 80, "ratio": 0.5}}`, string(st.Targets[0].Applied.Raw))
}
