// Package contractlib is the decision contract as a Rego library:
// data.governor.contract.valid(decision, input) and problems(decision,
// input), through the builtin governor.contract_problems that runs the
// controller's own check (decision.Validate). The builtin is registered with
// OPA wherever this package is linked, so that the activation gate runs the
// tests of a bundle that carries the library (governor init writes it in)
// as governor test runs them; governor test adds the library where a module
// uses it and no bundle carries it.
package contractlib

import (
	_ "embed"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"

	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/decision"
)

// Source is the library's Rego.
//
//go:embed contract.rego
var Source string

// FileName names the library in errors and coverage.
const FileName = "governor/contract.rego"

// Package is the library's package path; a module that refers under it
// needs the library.
var Package = ast.MustParseRef("data.governor.contract")

// Decl declares governor.contract_problems(decision, input): the contract's
// problems, as strings.
var Decl = &ast.Builtin{
	Name: "governor.contract_problems",
	Decl: types.NewFunction(types.Args(
		types.Named("decision", types.A).Description("the policy's output"),
		types.Named("input", types.A).Description("the input document it was made on"),
	), types.Named("problems", types.NewArray(nil, types.S)).Description("why the controller would reject it")),
}

func init() {
	rego.RegisterBuiltin2(&rego.Function{Name: Decl.Name, Decl: Decl.Decl}, problems)
}

// Carried says whether modules hold the library's package already.
func Carried(modules map[string]*ast.Module) bool {
	for _, m := range modules {
		if m.Package.Path.Equal(Package) {
			return true
		}
	}
	return false
}

func problems(_ rego.BuiltinContext, d, in *ast.Term) (*ast.Term, error) {
	raw, err := ast.JSON(d.Value)
	if err != nil {
		return nil, err
	}
	input, err := ast.JSON(in.Value)
	if err != nil {
		return nil, err
	}
	doc, _ := input.(map[string]any)
	return ast.ArrayTerm(termsOf(Problems(raw, doc))...), nil
}

// Problems are the contract's problems with a raw decision (numbers as
// json.Number) made on input, as the engine finds them.
func Problems(raw any, input map[string]any) []string {
	_, found := decision.Validate(raw, decision.ContractFromInput(input, builtin.Actuators))
	out := make([]string, len(found))
	for i, p := range found {
		out[i] = p.String()
	}
	return out
}

func termsOf(ss []string) []*ast.Term {
	out := make([]*ast.Term, len(ss))
	for i, s := range ss {
		out[i] = ast.StringTerm(s)
	}
	return out
}

// Module parses the library.
func Module() (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(FileName, Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("contract library: %w", err)
	}
	return m, nil
}
