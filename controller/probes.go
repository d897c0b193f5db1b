package controller

import (
	"context"
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
)

// lastInput is what a loop's status keeps of the input of a decision the
// gate makes again (status.lastInput): what the tick read, which the rest
// of the status does not hold (readKeys). Nil when it would take more than
// a quarter of the status's size limit: the gate then has no decision of
// this loop's to make again, rather than the loop less history.
func lastInput(input map[string]any, maxStatusBytes int) *apiextensionsv1.JSON {
	read := make(map[string]any, len(readKeys))
	for _, k := range readKeys {
		read[k] = input[k]
	}
	raw, err := json.Marshal(read)
	if err != nil || len(raw) > maxStatusBytes/4 {
		return nil
	}
	return &apiextensionsv1.JSON{Raw: raw}
}

// recordedInput rebuilds the input of a loop's last decision from its
// status: status.lastInput, with the loop's params, state and history (as
// the next tick would see them) and, for a Deliberative loop, its
// supervised loop as it is now.
func recordedInput(loop, supervised *v1alpha1.ControlLoop) (map[string]any, error) {
	read, err := decodeJSON(loop.Status.LastInput, "status.lastInput")
	if err != nil {
		return nil, err
	}
	var sup map[string]any
	if loop.Spec.Kind == v1alpha1.Deliberative {
		if supervised == nil {
			return nil, fmt.Errorf("supervised loop %s/%s not found", loop.Namespace, loop.Spec.Supervises)
		}
		if sup, err = supervisedDoc(supervised); err != nil {
			return nil, err
		}
	}
	return inputDoc(loop, &loop.Status, read, sup, true)
}

// lastDecisions is bundles.Hooks.Probes: the last decision of each loop
// that follows the bundle's active revision, on its input rebuilt from its
// status (recordedInput). The loops are read from the API server, so that
// every replica, leader or standby, gates a new revision on the loops' real
// inputs as the leader wrote them (at most --status-flush-interval old). A
// loop whose input cannot be rebuilt (its supervised loop is gone) is left
// out.
func lastDecisions(api client.Reader, watched []string, reg *bundles.Registry, fields *actuators.Registry) func(ctx context.Context, bundle string) ([]bundles.Probe, error) {
	return func(ctx context.Context, bundle string) ([]bundles.Probe, error) {
		loops, err := listLoops(ctx, api, watched)
		if err != nil {
			return nil, fmt.Errorf("listing ControlLoops for their last inputs: %w", err)
		}
		byName := map[string]*v1alpha1.ControlLoop{}
		for i := range loops {
			byName[loops[i].Namespace+"/"+loops[i].Name] = &loops[i]
		}
		var probes []bundles.Probe
		for i := range loops {
			loop := &loops[i]
			if loop.Spec.Policy.Bundle != bundle || loop.Spec.Policy.Revision != "" || loop.Status.LastInput == nil {
				continue
			}
			input, err := recordedInput(loop, byName[loop.Namespace+"/"+loop.Spec.Supervises])
			if err != nil {
				continue
			}
			req := decisionRequest(&loop.Spec, fields, reg.Limits(), input)
			probes = append(probes, bundles.Probe{Loop: loop.Namespace + "/" + loop.Name, Decision: req.Decision,
				Input: input, Contract: *req.Contract, Timeout: req.Timeout})
		}
		return probes, nil
	}
}
