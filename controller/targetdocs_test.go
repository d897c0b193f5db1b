package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/bundles"
	"governor.dev/governor/workload"
)

// A loop's ticks decide on its targets as they read at each tick, while the
// documents of unchanged targets are the ones kept: a change of any field
// is seen at the next tick, and a target the loop drops is forgotten.
func TestTicksDecideOnTargetsAsTheyReadNow(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "show"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "show", "policy.rego"), []byte(`package show

decision := {"events": [sprintf("%v %v %v", [name, t.replicas, t.bandwidth]) | some name, t in input.targets]}
`), 0o644))
	reg, err := bundles.LoadRegistry(context.Background(), dir)
	require.NoError(t, err)
	loop := echoLoop(t, `{}`)
	loop.Spec.Policy.Bundle, loop.Spec.Policy.Decision = "show", "show/decision"
	w := freshWorld()
	docs := targetDocs{}
	decide := func() (tickResult, []string) {
		t.Helper()
		res := tick(context.Background(), w, reg, loop, &v1alpha1.ControlLoopStatus{}, tickNow, false, docs)
		require.Empty(t, res.entry.Error)
		return res, res.entry.Events
	}

	first, events := decide()
	assert.Equal(t, []string{`web 3 {"egress": "500M", "egress_bps": 500000000}`}, events)
	again, events := decide()
	assert.Equal(t, []string{`web 3 {"egress": "500M", "egress_bps": 500000000}`}, events)
	assert.True(t, sameMap(doc(first.input, "web"), doc(again.input, "web")), "an unchanged target's document is kept")

	w.targets["web"].Current["replicas"] = ptr.To(int64(4))
	_, events = decide()
	assert.Equal(t, []string{`web 4 {"egress": "500M", "egress_bps": 500000000}`}, events)
	w.targets["web"].Current["bandwidth"] = bandwidth.Value{Egress: ptr.To(resource.MustParse("600M"))}
	changed, events := decide()
	assert.Equal(t, []string{`web 4 {"egress": "600M", "egress_bps": 600000000}`}, events)
	assert.Equal(t, map[string]any{"egress": "500M", "egress_bps": int64(500000000)}, doc(first.input, "web")["bandwidth"],
		"a kept document is never changed")
	assert.True(t, sameMap(doc(changed.input, "web"), docs["web"].doc), "the new document is kept")

	docs["gone"] = docs["web"]
	decide()
	assert.NotContains(t, docs, "gone", "a target the loop no longer has is forgotten")
}

// A target is read again from the last read kept of it only under the same
// spec (the loop's UID and a generation the API server set), and from the
// latest read, with the kept document that read is the same as.
func TestTargetReadAgainFromTheLastUnderTheSameSpec(t *testing.T) {
	loop := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{UID: "l1", Generation: 3}}
	web := func(rv string) *actuators.Target {
		return &actuators.Target{Name: "web", Workload: workload.Ref{Kind: workload.KindDeployment, Namespace: "ns", Name: "web"},
			Exists: true, Object: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{UID: "w1", ResourceVersion: rv}},
			Current: map[string]any{"replicas": ptr.To[int64](3)}}
	}
	docs := targetDocs{}
	assert.Equal(t, actuators.Last{}, docs.last(loop, "web"), "nothing read yet")
	kept, _ := docs.keep("web", map[string]any{"replicas": int64(3)}, readOf(loop, web("7")))
	docs.keep("web", map[string]any{"replicas": int64(3)}, readOf(loop, web("8")))

	last := docs.last(loop, "web")
	assert.Equal(t, "8", last.ResourceVersion, "the latest read")
	assert.Equal(t, types.UID("w1"), last.UID)
	assert.Equal(t, web("8").Current, last.Current)
	assert.True(t, sameMap(kept, last.Doc), "with the kept document")
	assert.Equal(t, actuators.Last{}, docs.last(loop, "api"), "another target")

	for name, other := range map[string]*v1alpha1.ControlLoop{
		"another generation":   {ObjectMeta: metav1.ObjectMeta{UID: "l1", Generation: 4}},
		"another loop":         {ObjectMeta: metav1.ObjectMeta{UID: "l2", Generation: 3}},
		"no generation to say": {ObjectMeta: metav1.ObjectMeta{UID: "l1"}},
	} {
		assert.Equal(t, actuators.Last{}, docs.last(other, "web"), name)
	}
	zero := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{UID: "l1"}}
	docs.keep("web", map[string]any{"replicas": int64(3)}, readOf(zero, web("9")))
	assert.Equal(t, actuators.Last{}, docs.last(zero, "web"), "a spec of no generation is never the same")
}

func doc(input map[string]any, target string) map[string]any {
	return input["targets"].(map[string]any)[target].(map[string]any)
}

// sameMap says whether a and b are one map, not two equal ones.
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// Whatever two target documents are, keeping the first and then reading the
// second gives the second's document and value: a kept one only when they
// are equal.
func FuzzTargetDocsKeepOnlyTheSame(f *testing.F) {
	f.Add(`{"replicas": 3, "bandwidth": {"egress": "500M"}}`, `{"replicas": 3, "bandwidth": {"egress": "500M"}}`)
	f.Add(`{"replicas": 3, "bandwidth": {"egress": "500M"}}`, `{"replicas": 3, "bandwidth": {"egress": "600M"}}`)
	f.Add(`{"a": [1, 2.5, null, true]}`, `{"a": [1, 2.50, null, true]}`)
	f.Add(`{"a": {}}`, `{"a": []}`)
	f.Add(`{"a": null}`, `{"b": null}`)
	f.Fuzz(func(t *testing.T, first, second string) {
		a, b := decodeDoc(first), decodeDoc(second)
		if a == nil || b == nil {
			return
		}
		assert.Equal(t, reflect.DeepEqual(a, b), actuators.SameDoc(a, b), "SameDoc(%s, %s)", first, second)
		docs := targetDocs{}
		docs.keep("t", a, readAt{})
		got, value := docs.keep("t", b, readAt{})
		assert.Equal(t, b, got)
		want, err := ast.InterfaceToValue(b)
		require.NoError(t, err)
		assert.Equal(t, 0, want.Compare(value), "the value is the document's: %v, not %v", want, value)
	})
}

// decodeDoc decodes a JSON object as the input's documents hold it (numbers
// as json.Number); nil when it is not one.
func decodeDoc(s string) map[string]any {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var out map[string]any
	if dec.Decode(&out) != nil {
		return nil
	}
	return out
}
