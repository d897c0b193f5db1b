package hpa_test

import (
	"testing"

	"governor.dev/governor/workload"

	"github.com/stretchr/testify/assert"

	"governor.dev/governor/actuators/hpa"
)

func TestTargets(t *testing.T) {
	web := workload.Ref{Kind: "Deployment", Namespace: "ns", Name: "web"}
	assert.True(t, hpa.Targets(newHPA("ns", "h", "apps/v1", "Deployment", "web", nil, 3), web))
	assert.False(t, hpa.Targets(newHPA("other", "h", "apps/v1", "Deployment", "web", nil, 3), web))
	assert.False(t, hpa.Targets(newHPA("ns", "h", "apps/v1", "StatefulSet", "web", nil, 3), web))
	assert.False(t, hpa.Targets(newHPA("ns", "h", "example.com/v1", "Deployment", "web", nil, 3), web))
	assert.False(t, hpa.Targets(newHPA("ns", "h", "", "Deployment", "web", nil, 3), web))
	assert.False(t, hpa.Targets(newHPA("ns", "h", "apps/v1", "Deployment", "api", nil, 3), web))
}

func TestBoundsErrorMessage(t *testing.T) {
	assert.EqualError(t, &hpa.BoundsError{HPA: "ns/h", Min: 4, Max: 3}, "horizontalpodautoscaler ns/h: minReplicas 4 would exceed maxReplicas 3")
	assert.EqualError(t, &hpa.BoundsError{HPA: "ns/h", Min: 0, Max: 0}, "horizontalpodautoscaler ns/h: maxReplicas 0 is below 1")
}
