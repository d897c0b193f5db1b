package actuators_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/actuators"
)

func TestEqualQuantity(t *testing.T) {
	q := resource.MustParse("400M")
	assert.True(t, actuators.EqualQuantity("400M", q))
	assert.True(t, actuators.EqualQuantity("400000k", q))
	assert.True(t, actuators.EqualQuantity("0.4G", q))
	assert.False(t, actuators.EqualQuantity("401M", q))
	assert.False(t, actuators.EqualQuantity("", q))
	assert.False(t, actuators.EqualQuantity("fast", q))
}

// An object read without managedFields (a cache that strips them) is refused: extracting
// governor's fields from it would find none and the apply would drop them.
func TestRequireManagedFields(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	assert.ErrorContains(t, actuators.RequireManagedFields(dep), "read without managedFields")
	dep.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	assert.NoError(t, actuators.RequireManagedFields(dep))
}
