// Package resources sets container resource requests and limits in the pod template of a
// Deployment or a StatefulSet, by server-side apply as field manager "governor". Only the
// resource names given are claimed and changed; every other field of the container, and
// every other resource name, stays as it is and with whoever owns it. It changes the pod
// template, so it rolls the workload.
package resources

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"governor.dev/governor/workload"

	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
)

// Container is what to set in one container: the resource names given (cpu, memory, ...) in
// requests and limits. Names not given are left alone.
type Container struct {
	Requests corev1.ResourceList `json:"requests,omitempty"`
	Limits   corev1.ResourceList `json:"limits,omitempty"`
}

// UnknownContainerError refuses a container name the workload's pod template does not have.
// Nothing was written.
type UnknownContainerError struct {
	Target    workload.Ref
	Container string
	// Known are the containers of the pod template.
	Known []string
}

func (e *UnknownContainerError) Error() string {
	return fmt.Sprintf("%s: unknown container %q (containers: %s)", e.Target, e.Container, strings.Join(e.Known, ", "))
}

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=list;watch;patch

// Apply sets, in the pod template of the workload t, the requests and limits given for each
// container named in containers. It returns false, with no write, when every value given is
// already there (compared as quantities: "1Gi" and "1024Mi" are equal). A container name the
// template does not have is an *UnknownContainerError, and nothing is written.
func Apply(ctx context.Context, c client.Client, t workload.Ref, containers Containers) (bool, error) {
	if err := t.Validate(); err != nil {
		return false, err
	}
	if len(containers) == 0 {
		return false, nil
	}
	names := make([]string, 0, len(containers))
	for name := range containers {
		names = append(names, name)
	}
	sort.Strings(names)
	return actuators.ApplyWorkload(ctx, c, t, func(obj client.Object, ac *actuators.WorkloadApply) (bool, error) {
		current := map[string]*corev1.Container{}
		var known []string
		for i, ctr := range workload.PodTemplate(obj).Spec.Containers {
			current[ctr.Name] = &workload.PodTemplate(obj).Spec.Containers[i]
			known = append(known, ctr.Name)
		}
		for _, name := range names {
			if current[name] == nil {
				return false, &UnknownContainerError{Target: t, Container: name, Known: known}
			}
		}
		need := false
		for _, name := range names {
			want, cur := containers[name], current[name].Resources
			set := func(get func(*corev1ac.ResourceRequirementsApplyConfiguration) *corev1.ResourceList, have, want corev1.ResourceList) {
				for res, q := range want {
					if h, ok := have[res]; ok && h.Cmp(q) == 0 {
						continue
					}
					need = true
					ctr := ac.Container(name)
					if ctr.Resources == nil {
						ctr.WithResources(corev1ac.ResourceRequirements())
					}
					l := get(ctr.Resources)
					if *l == nil {
						*l = corev1.ResourceList{}
					}
					(*l)[res] = q.DeepCopy()
				}
			}
			set(requests, cur.Requests, want.Requests)
			set(limits, cur.Limits, want.Limits)
		}
		return need, nil
	})
}

func requests(r *corev1ac.ResourceRequirementsApplyConfiguration) *corev1.ResourceList {
	if r.Requests == nil {
		r.Requests = &corev1.ResourceList{}
	}
	return r.Requests
}

func limits(r *corev1ac.ResourceRequirementsApplyConfiguration) *corev1.ResourceList {
	if r.Limits == nil {
		r.Limits = &corev1.ResourceList{}
	}
	return r.Limits
}
