package controller

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/actuators"
	"governor.dev/governor/api/v1alpha1"
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
	read  readAt
}

// readAt is what the registry reads a target again from (actuators.Last,
// but for the document: the kept one), and the loop's spec it was read
// under (its UID and generation).
type readAt struct {
	last       actuators.Last
	loop       types.UID
	generation int64
}

// readOf is a target as read at a tick of loop.
func readOf(loop *v1alpha1.ControlLoop, target *actuators.Target) readAt {
	return readAt{last: actuators.LastOf(target, nil), loop: loop.UID, generation: loop.Generation}
}

// keep is the document to decide on for a target read as doc, and its
// value: the kept ones when they are the same, else doc, converted and
// kept. A nil targetDocs keeps nothing (governor replay): the value is
// nil, and the decision converts the document.
func (d targetDocs) keep(name string, doc map[string]any, read readAt) (map[string]any, ast.Value) {
	if d == nil {
		return doc, nil
	}
	if last, ok := d[name]; ok && actuators.SameDoc(last.doc, doc) {
		last.read = read
		d[name] = last
		return last.doc, last.value
	}
	value, err := ast.InterfaceToValue(doc)
	if err != nil {
		// Not a JSON document: the decision converts it, and says why not.
		delete(d, name)
		return doc, nil
	}
	d[name] = targetDoc{doc: doc, value: value, read: read}
	return doc, value
}

// last is a target as read at the tick before, for the registry to read
// again from: nothing unless the loop's spec is the same (a generation
// the API server set, so that a changed spec has another).
func (d targetDocs) last(loop *v1alpha1.ControlLoop, name string) actuators.Last {
	kept, ok := d[name]
	if !ok || loop.Generation == 0 || kept.read.loop != loop.UID || kept.read.generation != loop.Generation {
		return actuators.Last{}
	}
	last := kept.read.last
	last.Doc = kept.doc
	return last
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
