package controller

import (
	"encoding/json"

	"github.com/open-policy-agent/opa/v1/ast"
)

// targetDocs are a runner's last documents of its targets
// (input.targets.<name>), with their Rego values: a target that reads as
// at the tick before has that tick's document, converted then. Most ticks
// change no target, and converting the targets again at every tick was a
// quarter of all a thousand loops' runners allocated (and so of their
// garbage collection, which is where their tick lag came from).
//
// A document is never changed once kept: the tick's input, its status's
// lastInput and the decision log share it.
type targetDocs map[string]targetDoc

type targetDoc struct {
	doc   map[string]any
	value ast.Value
}

// keep is the document to decide on for a target read as doc, and its
// value: the kept ones when they are the same, else doc, converted and
// kept. A nil targetDocs keeps nothing (governor replay): the value is
// nil, and the decision converts the document.
func (d targetDocs) keep(name string, doc map[string]any) (map[string]any, ast.Value) {
	if d == nil {
		return doc, nil
	}
	if last, ok := d[name]; ok && sameDoc(last.doc, doc) {
		return last.doc, last.value
	}
	value, err := ast.InterfaceToValue(doc)
	if err != nil {
		// Not a JSON document: the decision converts it, and says why not.
		delete(d, name)
		return doc, nil
	}
	d[name] = targetDoc{doc: doc, value: value}
	return doc, value
}

// forget drops the documents of targets the loop no longer has (those
// not among targets).
func (d targetDocs) forget(targets map[string]any) {
	if len(d) <= len(targets) {
		return
	}
	for name := range d {
		if _, ok := targets[name]; !ok {
			delete(d, name)
		}
	}
}

// sameDoc says whether two JSON documents (as the actuators make them) are
// equal, without allocating. Values of other types are never the same.
func sameDoc(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameDoc(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameDoc(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil, string, bool, int, int64, float64, json.Number:
		return a == b
	}
	return false
}
