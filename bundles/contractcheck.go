package bundles

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"

	"governor.dev/governor/decision/contractlib"
)

// contractCheck fails a passing test when a rule named decision that it
// evaluated returns, on the input the test gave it, a decision that breaks
// the contract: the rule is evaluated again on that input, from the test's
// trace, and checked as the engine checks a loop's decision.
func contractCheck(ctx context.Context, compiler *ast.Compiler, store storage.Store, txn storage.Transaction) func(*tester.Result) {
	return func(r *tester.Result) {
		if r.Fail || r.Error != nil || r.Skip {
			return
		}
		seen := map[string]bool{}
		for _, e := range r.Trace {
			rule, ok := e.Node.(*ast.Rule)
			if e.Op != topdown.EnterOp || !ok || rule.Module == nil || e.Input() == nil {
				continue
			}
			path := rule.Ref().GroundPrefix()
			if !path[len(path)-1].Equal(ast.StringTerm("decision")) {
				continue
			}
			key := path.String() + " " + e.Input().String()
			if seen[key] {
				continue
			}
			seen[key] = true
			if why := breaks(ctx, compiler, store, txn, path, e.Input()); why != "" {
				r.Fail = true
				r.Output = append(r.Output, []byte(why+"\n")...)
				return
			}
		}
	}
}

// breaks says how the decision at path, on input, breaks the contract; ""
// when it holds or is undefined (a test may expect that).
func breaks(ctx context.Context, compiler *ast.Compiler, store storage.Store, txn storage.Transaction, path ast.Ref, input *ast.Term) string {
	in, err := ast.JSON(input.Value)
	if err != nil {
		return ""
	}
	doc, _ := in.(map[string]any)
	rs, err := rego.New(rego.Compiler(compiler), rego.Store(store), rego.Transaction(txn), rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(path)))),
		rego.ParsedInput(input.Value)).Eval(ctx)
	if err != nil || len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return ""
	}
	raw, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
	if err != nil {
		return ""
	}
	asJSON, err := ast.JSON(raw)
	if err != nil {
		return ""
	}
	problems := contractlib.Problems(asJSON, doc)
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("contract: %s on the test's input would be rejected: %s", path, strings.Join(problems, "; "))
}
