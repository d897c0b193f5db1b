package bundles

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/open-policy-agent/opa/v1/ast"
)

// undefinedReason says why no rule defines a decision path, and what was
// probably meant: a path naming a package is asked for the decision rule
// in it; a mistyped one gets the closest rule paths of the revision.
func undefinedReason(compiler *ast.Compiler, ref ast.Ref) string {
	var paths []string
	seen := map[string]bool{}
	for _, m := range compiler.Modules {
		for _, r := range m.Rules {
			p := slashPath(r.Ref().GroundPrefix())
			if !seen[p] && !strings.Contains(p, "test_") {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	asked := slashPath(ref)
	if isPackage(compiler, ref) {
		var names []string
		for _, p := range paths {
			if rest, ok := strings.CutPrefix(p, asked+"/"); ok && !strings.Contains(rest, "/") {
				names = append(names, rest)
			}
		}
		if slices.Contains(names, "decision") {
			return fmt.Sprintf("it is a package, not a rule: did you mean %s/decision?", asked)
		}
		return fmt.Sprintf("it is a package, not a rule (%d rules in it): name the rule that decides", len(names))
	}
	best, dist := []string(nil), len(asked)/3+2 // a few typos, not another path
	for _, p := range paths {
		switch d := levenshtein.ComputeDistance(asked, p); {
		case d < dist:
			best, dist = []string{p}, d
		case d == dist:
			best = append(best, p)
		}
	}
	if len(best) == 0 {
		return "no rule defines it"
	}
	slices.Sort(best)
	return "no rule defines it: did you mean " + strings.Join(best, " or ") + "?"
}

// slashPath is data.a.b.c as a/b/c, as loops name decisions.
func slashPath(ref ast.Ref) string {
	parts := make([]string, 0, len(ref))
	for _, t := range ref[1:] {
		if s, ok := t.Value.(ast.String); ok {
			parts = append(parts, string(s))
		} else {
			parts = append(parts, t.String())
		}
	}
	return strings.Join(parts, "/")
}

// isPackage says whether ref is a package's path: its value would be an
// object of the package's rules, helpers and all, never a decision.
func isPackage(compiler *ast.Compiler, ref ast.Ref) bool {
	for _, m := range compiler.Modules {
		if m.Package.Path.Equal(ref) {
			return true
		}
	}
	return false
}
