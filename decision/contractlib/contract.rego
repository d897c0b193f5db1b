# The decision contract, for Rego tests: `governor test` ships this library and
# the builtin it calls (governor.contract_problems, the controller's own
# check), so a test can assert that a decision would be accepted.
package governor.contract

# problems(decision, inp) are why the controller would reject decision made on
# the input document inp (its targets and loop kind): none when it is valid.
problems(decision, inp) := governor.contract_problems(decision, inp)

# valid(decision, inp) holds when the controller would accept decision made on inp.
valid(decision, inp) if count(problems(decision, inp)) == 0
