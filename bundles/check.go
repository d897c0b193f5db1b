package bundles

import (
	"context"
	"errors"
)

// CheckBundle puts the bundle directory or tarball at path through the
// activation gate (Gate, from reading it to preparing decisions), as a new
// revision from a bundle server goes through it, activating it into a
// throwaway engine: `governor bundle check` runs it on an author's desk.
// A refusal is a *GateError naming the step.
func CheckBundle(ctx context.Context, path string, decisions []string, lim Limits) (*Revision, error) {
	name := bundleName(path)
	b, err := readBundle(path, name, path, nil, lim.OrDefaults().MaxBundleFileBytes)
	if err != nil {
		var ge *GateError
		if errors.As(err, &ge) {
			return nil, err
		}
		return nil, &GateError{Bundle: name, Step: StepRead, Err: err}
	}
	return Gate(ctx, name, path, b, NewEmptyEngine(name), Checks{Decisions: decisions, Limits: lim})
}
