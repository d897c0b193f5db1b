// Package v1alpha1 holds the ControlLoop API, group governor.dev.
// +kubebuilder:object:generate=true
// +groupName=governor.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the ControlLoop API.
	GroupVersion = schema.GroupVersion{Group: "governor.dev", Version: "v1alpha1"}

	// SchemeBuilder adds the API's types to a scheme. It is apimachinery's,
	// not controller-runtime's (deprecated there): an API package should
	// import little beyond apimachinery.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers ControlLoop and ControlLoopList in the group
// version, with the meta types (options, status, watch events) every group
// version has.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ControlLoop{}, &ControlLoopList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
