// Package builtin is the table of Governor's actuators: adding one is its package and a line
// here (and its bounds in the API's TargetSpec).
package builtin

import (
	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/external"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/replicas"
	"governor.dev/governor/actuators/resources"
)

// Actuators are applied in this order: an HPA's bounds before the replicas it would own,
// the pod template's resources before the bandwidth of the Pods it makes. External acts on
// External targets only, which the others never act on.
var Actuators = actuators.NewRegistry(
	hpa.Actuator{},
	replicas.Actuator{},
	resources.Actuator{},
	bandwidth.Actuator{},
	external.New(),
)
