package collectors

import (
	"fmt"
	"slices"
	"strings"

	"governor.dev/governor/api/v1alpha1"
)

// AllNamespaces in a Scope's list allows every namespace.
const AllNamespaces = "*"

// Scope is what the operator lets loops observe outside their targets: a
// loop's collectors read the managed system only within it. Its zero value
// is the narrowest: Hubble filters on the loop's own namespace, and no
// Prometheus queries.
type Scope struct {
	// Observe are the namespaces, besides its own, that a loop's Hubble
	// filters may name; AllNamespaces allows any, and filters naming none
	// (flows of the whole cluster).
	Observe []string
	// Prometheus are the namespaces whose loops may run PromQL queries
	// (which can read any namespace's metrics); AllNamespaces allows
	// every loop.
	Prometheus []string
}

// ScopeError is a loop whose collectors reach outside the operator's
// Scope: nothing of the loop is collected.
type ScopeError struct {
	Collector string
	Reason    string
}

func (e *ScopeError) Error() string {
	return "collector " + e.Collector + ": " + e.Reason
}

// Check says whether every collector of a loop stays within the scope: a
// *ScopeError for the first that does not.
func (s Scope) Check(loop *v1alpha1.ControlLoop) error {
	for i := range loop.Spec.Collectors {
		c := &loop.Spec.Collectors[i]
		var reason string
		switch {
		case c.Hubble != nil:
			reason = s.hubble(loop.Namespace, c.Hubble)
		case c.Prometheus != nil && !allows(s.Prometheus, loop.Namespace):
			reason = fmt.Sprintf("prometheus queries are not allowed to loops in namespace %s (PromQL reads any namespace's metrics; governor run --prometheus-namespaces lists the namespaces whose loops may query)", loop.Namespace)
		}
		if reason != "" {
			return &ScopeError{Collector: c.Name, Reason: reason}
		}
	}
	return nil
}

// hubble is why a Hubble filter of a loop in namespace ns is out of scope,
// "" when it is not: every namespace it names must be allowed, and it must
// name one on at least one side, so that each flow it sees has an end there.
func (s Scope) hubble(ns string, h *v1alpha1.HubbleCollector) string {
	if slices.Contains(s.Observe, AllNamespaces) {
		return ""
	}
	named := false
	for _, side := range []struct {
		name string
		e    *v1alpha1.FlowEndpoint
	}{{"source", h.Source}, {"destination", h.Destination}} {
		if side.e == nil || side.e.Namespace == "" {
			continue
		}
		named = true
		if side.e.Namespace != ns && !slices.Contains(s.Observe, side.e.Namespace) {
			return fmt.Sprintf("hubble %s namespace %s is outside what loops in %s may observe (%s; governor run --observe-namespaces adds others)", side.name, side.e.Namespace, ns, s.observable(ns))
		}
	}
	if !named {
		return fmt.Sprintf("a hubble filter naming no namespace observes the whole cluster: give its source or destination one of %s (governor run --observe-namespaces adds others)", s.observable(ns))
	}
	return ""
}

// observable lists the namespaces a loop in ns may observe, for messages.
func (s Scope) observable(ns string) string {
	all := append([]string{ns}, s.Observe...)
	return strings.Join(slices.Compact(slices.Sorted(slices.Values(all))), ", ")
}

// allows is whether a list of namespaces holds ns, or AllNamespaces.
func allows(list []string, ns string) bool {
	return slices.Contains(list, ns) || slices.Contains(list, AllNamespaces)
}
