package bundles

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// entrypointsKey is the key of a bundle manifest's metadata that lists the
// decision paths loops may name: {"metadata": {"entrypoints":
// ["governor/reactive/decision"]}}.
const entrypointsKey = "entrypoints"

// entrypoints are the decision paths a bundle declares, as data references
// ("data.governor.reactive.decision"), sorted: those its manifest's
// metadata lists, and the rules and packages its Rego annotates with
// `entrypoint: true` (OPA's METADATA annotations, as `opa build` reads
// them). None means the bundle declares none: any rule may be decided.
func entrypoints(b *bundle.Bundle) ([]string, error) {
	set := map[string]bool{}
	if raw, ok := b.Manifest.Metadata[entrypointsKey]; ok {
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("manifest metadata.%s: want a list of decision paths like \"governor/reactive/decision\", got %T", entrypointsKey, raw)
		}
		for _, v := range list {
			path, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("manifest metadata.%s: want decision paths (strings), got %v", entrypointsKey, v)
			}
			ref, err := DecisionRef(path)
			if err != nil {
				return nil, fmt.Errorf("manifest metadata.%s: %w", entrypointsKey, err)
			}
			set[ref.String()] = true
		}
	}
	// Rego annotations, read as `opa build` reads them (OPA's compile
	// package): a package's path, or a document's rule reference.
	modules := make([]*ast.Module, 0, len(b.Modules))
	for _, m := range b.Modules {
		if m.Parsed != nil {
			modules = append(modules, m.Parsed)
		}
	}
	as, errs := ast.BuildAnnotationSet(modules)
	if len(errs) > 0 {
		return nil, errs
	}
	for _, a := range as.Flatten() {
		if !a.Annotations.Entrypoint {
			continue
		}
		switch a.Annotations.Scope {
		case "package":
			if p := a.GetPackage(); p != nil {
				set[p.Path.String()] = true
			}
		case "document":
			if r := a.GetRule(); r != nil {
				set[r.Ref().GroundPrefix().String()] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// NotEntrypointError is a decision path a loop names that its bundle's
// revision does not declare as an entrypoint.
type NotEntrypointError struct {
	Decision, Revision string
	Entrypoints        []string
}

func (e *NotEntrypointError) Error() string {
	return fmt.Sprintf("decision %s is not an entrypoint of %s (its entrypoints: %s)", e.Decision, e.Revision, strings.Join(e.Entrypoints, ", "))
}

// CheckEntrypoint says whether loops may decide with a decision path on
// this revision: any path when the bundle declares no entrypoints,
// otherwise only those it declares (a *NotEntrypointError for others).
func (r *Revision) CheckEntrypoint(decision string) error {
	if len(r.entrypoints) == 0 {
		return nil
	}
	ref, err := DecisionRef(decision)
	if err != nil {
		return err
	}
	if slices.Contains(r.entrypoints, ref.String()) {
		return nil
	}
	return &NotEntrypointError{Decision: decision, Revision: r.String(), Entrypoints: r.Entrypoints()}
}

// Entrypoints are the decision paths the bundle declares, as loops name
// them ("governor/reactive/decision"), sorted; none when it declares none.
func (r *Revision) Entrypoints() []string {
	out := make([]string, len(r.entrypoints))
	for i, e := range r.entrypoints {
		out[i] = decisionPath(e)
	}
	return out
}

// decisionPath turns a data reference's string ("data.a.b") into the
// slash form loops use ("a/b").
func decisionPath(ref string) string {
	return strings.ReplaceAll(strings.TrimPrefix(ref, "data."), ".", "/")
}
