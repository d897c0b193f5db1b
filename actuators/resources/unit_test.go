package resources

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// input.targets.<name>.resources: quantities as strings, and cpu in millicores and memory in
// bytes where they are whole numbers of those units.
func TestDoc(t *testing.T) {
	doc := Actuator{}.Doc(Containers{
		"app": {
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("0.5")},
		},
		"sidecar": {},
	})
	assert.Equal(t, map[string]any{
		"app": map[string]any{
			"requests":     map[string]any{"cpu": "250m", "memory": "128Mi"},
			"limits":       map[string]any{"cpu": "1", "memory": "500m"},
			"cpu_millis":   map[string]any{"requests": int64(250), "limits": int64(1000)},
			"memory_bytes": map[string]any{"requests": int64(134217728)}, // half a byte is not whole
		},
		"sidecar": map[string]any{
			"requests": map[string]any{}, "limits": map[string]any{},
			"cpu_millis": map[string]any{}, "memory_bytes": map[string]any{},
		},
	}, doc)
}
