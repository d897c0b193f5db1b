package guard

import (
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/actuators"
	"governor.dev/governor/actuators/bandwidth"
	"governor.dev/governor/actuators/builtin"
	"governor.dev/governor/actuators/external"
	"governor.dev/governor/actuators/hpa"
	"governor.dev/governor/actuators/resources"
	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/decision"
	"governor.dev/governor/workload"
)

// The world of FuzzGuard: flags say which bounds the three targets declare and what is true of
// them at the tick.
const (
	webSnap       = 1 << iota // web's outOfBounds is Snap
	dbSnap                    // db's outOfBounds is Snap
	webReplicas               // web declares replicas bounds (else hpa bounds)
	webResources              // web declares resources bounds (memory)
	dbBandwidth               // db declares bandwidth bounds
	dbReplicas                // db declares replicas bounds too
	webExists                 // web's workload exists
	dbExists                  // db's workload exists
	webHasHPA                 // an HPA scales web
	cpuFresh                  // metric cpu is fresh
	jitterFresh               // metric jitter is fresh
	replicasKnown             // web's and db's replicas are known
	webChanged                // web has a lastChange
	dbChanged                 // db has a lastChange
	onlyApp                   // web's resources bounds name container app only
	appHasLimit               // app has a memory limit
	extSnap                   // ext's outOfBounds is Snap
	extKnown                  // ext's current settings are known
	extChanged                // ext has a lastChange
)

// FuzzGuard feeds the guard arbitrary decisions (JSON, through the contract as the engine
// does; the guard also judges what the contract refused, and one action on a target the loop
// does not have), arbitrary bounds and current values, inside and outside the bounds (of two
// workloads, and an External target whose settings rate and level take the bandwidth's and
// the memory's bounds and current values), and
// asserts the guard's promises on every action it lets through:
//   - only declared targets that exist, and fields they declare bounds for (containers and
//     resources included);
//   - a value inside [min, max] when the current value is (or is unknown), changed by at
//     most maxStep;
//   - a current value outside the bounds moves toward them, never away: by at most maxStep
//     and no further than into them (Step), or to the nearest bound (Snap);
//   - an action dropped as "already as asked" asked for what the target has: one clamped to
//     where the target is says it was clamped (issue 16);
//   - nothing on broken bounds (negative, min above max, a step not above 0);
//   - nothing inside a target's cooldown (one let through within Grace of its end is made at
//     the end, ActAt, never later than Grace from now), on a stale metric, twice on a target
//     in a tick, or beyond maxActions; an HPA's minReplicas never above its maxReplicas, a request never
//     above its limit.
func FuzzGuard(f *testing.F) {
	all := uint32(webReplicas | webResources | dbBandwidth | webExists | dbExists | cpuFresh | jitterFresh | replicasKnown | appHasLimit)
	seeds := []struct {
		decision string
		flags    uint32
	}{
		{`{"actions": [{"target": "web", "metric": "cpu", "set": {"replicas": 9}}, {"target": "db", "metric": "jitter", "set": {"bandwidth": {"egress": "510M"}}}]}`, all},
		{`{"actions": [{"target": "web", "set": {"replicas": 4, "resources": {"app": {"requests": {"memory": "300Mi"}, "limits": {"memory": "256Mi"}}}}}]}`, all | webSnap},
		{`{"actions": [{"target": "web", "set": {"hpa": {"minReplicas": 1, "maxReplicas": 50}}}], "events": ["x"]}`, all&^webReplicas | webHasHPA},
		{`{"actions": [{"target": "db", "set": {"bandwidth": {"egress": "0", "ingress": "5G"}, "replicas": 0}}]}`, all | dbReplicas | dbSnap | webChanged | dbChanged},
		{`{"actions": [{"target": "web", "set": {"resources": {"sidecar": {"requests": {"cpu": "1"}}}}}, {"target": "web", "set": {"replicas": 2}}]}`, all | onlyApp},
		{`{"actions": [{"target": "ghost", "set": {"replicas": 2}}, {"target": "db", "set": {"bandwidth": {}}}], "params": {}}`, all},
		{`{"actions": [{"target": "ext", "set": {"external": {"rate": 510000000, "level": 0.5}}}, {"target": "ext", "set": {"external": {"rate": 1}}}]}`, all | extKnown},
		{`{"actions": [{"target": "ext", "metric": "cpu", "set": {"external": {"level": 3000000000, "other": 1}}}, {"target": "web", "set": {"external": {"rate": 1}}}]}`, all | extSnap | extChanged},
		{`{"actions": [{"target": "ext", "set": {"external": {"level": 0}, "replicas": 2}}]}`, all | extKnown | extSnap},
		{`[]`, 0},
	}
	for _, s := range seeds {
		// Outside the bounds (100 replicas, max 10; 2Gi of memory, max 1Gi), with a broken bandwidth step.
		f.Add(s.decision, s.flags, int32(1), int32(10), int32(2), int64(100), int32(2), int32(20), int64(30), int64(40),
			"100M", "1000M", "-50M", "500M", "64Mi", "1Gi", "128Mi", "2Gi", "256Mi", int32(30000), int32(10000), int32(40000), int8(5), int32(0))
		// Inside them, out of cooldown.
		f.Add(s.decision, s.flags, int32(0), int32(5), int32(0), int64(3), int32(1), int32(8), int64(1), int64(8),
			"10M", "1G", "100M", "400M", "64Mi", "1Gi", "", "200Mi", "512Mi", int32(3000), int32(10000), int32(0), int8(1), int32(50))
	}
	f.Fuzz(func(t *testing.T, decisionJSON string, flags uint32, rMin, rMax, rStep int32, rCur int64,
		hMin, hMax int32, hCurMin, hCurMax int64,
		bwMin, bwMax, bwStep, bwCur, memMin, memMax, memStep, memCur, memLim string,
		cooldownMs, sinceWebMs, sinceDBMs int32, maxActions int8, graceMs int32) {
		has := func(flag uint32) bool { return flags&flag != 0 }
		mode := func(flag uint32) v1alpha1.OutOfBounds {
			if has(flag) {
				return v1alpha1.Snap
			}
			return ""
		}
		web := v1alpha1.TargetSpec{Name: "web", Ref: v1alpha1.TargetRef{Name: "web"}, OutOfBounds: mode(webSnap)}
		db := v1alpha1.TargetSpec{Name: "db", Ref: v1alpha1.TargetRef{Kind: "StatefulSet", Name: "db"}, OutOfBounds: mode(dbSnap)}
		replicaBounds := &v1alpha1.ReplicaBounds{Min: rMin, Max: rMax, MaxStep: rStep}
		if has(webReplicas) {
			web.Replicas = replicaBounds
		} else {
			web.HPA = &v1alpha1.HPABounds{Min: hMin, Max: hMax}
		}
		if has(dbReplicas) {
			db.Replicas = replicaBounds
		}
		// Bounds that do not parse are not declared: the CRD refuses them.
		if r := quantityRange(memMin, memMax, memStep); has(webResources) && r != nil {
			web.Resources = &v1alpha1.ResourceBounds{Memory: r}
			if has(onlyApp) {
				web.Resources.Containers = []string{"app"}
			}
		}
		if r := quantityRange(bwMin, bwMax, bwStep); has(dbBandwidth) && r != nil {
			db.Bandwidth = &v1alpha1.BandwidthBounds{Min: r.Min, Max: r.Max, MaxStep: r.MaxStep}
		}
		ext := v1alpha1.TargetSpec{Name: "ext", Ref: v1alpha1.TargetRef{Kind: v1alpha1.TargetExternal, Name: "lupus"}, OutOfBounds: mode(extSnap),
			External: &v1alpha1.ExternalTarget{URL: "https://lupus.example"}}
		extCurrent := external.Settings{}
		for _, s := range []struct{ name, lo, hi, step, cur string }{{"rate", bwMin, bwMax, bwStep, bwCur}, {"level", memMin, memMax, memStep, memCur}} {
			if r := quantityRange(s.lo, s.hi, s.step); r != nil {
				ext.External.Settings = append(ext.External.Settings, v1alpha1.ExternalSetting{Name: s.name, QuantityRange: *r})
			}
			if q := quantity(s.cur); q != nil && has(extKnown) {
				extCurrent[s.name] = *q
			}
		}
		spec := &v1alpha1.ControlLoopSpec{Targets: []v1alpha1.TargetSpec{web, db, ext},
			Safety: v1alpha1.SafetySpec{Cooldown: metav1.Duration{Duration: time.Duration(cooldownMs) * time.Millisecond}, MaxActions: int32(maxActions)}}

		var replicasCur *int64
		if has(replicasKnown) {
			replicasCur = &rCur
		}
		app := resources.Container{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
		if q := quantity(memCur); q != nil {
			app.Requests[corev1.ResourceMemory] = *q
		}
		if q := quantity(memLim); q != nil && has(appHasLimit) {
			app.Limits[corev1.ResourceMemory] = *q
		}
		webCurrent := map[string]any{"replicas": replicasCur, "resources": resources.Containers{"app": app, "sidecar": {}}}
		if has(webHasHPA) {
			webCurrent["hpa"] = &hpa.State{Name: "web", MinReplicas: hCurMin, MaxReplicas: hCurMax}
		}
		targets := map[string]*actuators.Target{
			"web": {Name: "web", Spec: &spec.Targets[0], Workload: workload.Of("ns", web.Ref), Exists: has(webExists), Current: webCurrent},
			"db": {Name: "db", Spec: &spec.Targets[1], Workload: workload.Of("ns", db.Ref), Exists: has(dbExists),
				Current: map[string]any{"replicas": replicasCur, "bandwidth": bandwidth.Value{Egress: quantity(bwCur)}}},
			"ext": {Name: "ext", Spec: &spec.Targets[2], Workload: workload.Of("ns", ext.Ref), Exists: true, Current: map[string]any{"external": extCurrent}},
		}
		lastChange := map[string]time.Time{}
		if has(webChanged) {
			lastChange["web"] = now.Add(-time.Duration(sinceWebMs) * time.Millisecond)
		}
		if has(dbChanged) {
			lastChange["db"] = now.Add(-time.Duration(sinceDBMs) * time.Millisecond)
		}
		if has(extChanged) {
			lastChange["ext"] = now.Add(-time.Duration(sinceDBMs) * time.Millisecond)
		}
		in := Input{Now: now, Spec: spec, Actuators: builtin.Actuators, Targets: targets, LastChange: lastChange,
			Metrics: map[string]bool{"cpu": has(cpuFresh), "jitter": has(jitterFresh)}, Grace: time.Duration((int64(graceMs)%10000+10000)%10000) * time.Millisecond}

		dec := json.NewDecoder(strings.NewReader(decisionJSON))
		dec.UseNumber()
		var raw any
		if dec.Decode(&raw) != nil {
			return // the engine only ever gives JSON values
		}
		d, _ := decision.Validate(raw, decision.Contract{Targets: map[string]bool{"web": true, "db": true, "ext": true}, Fields: builtin.Actuators})
		d.Actions = append(d.Actions, decision.Action{Target: "ghost", Set: decision.Set{"replicas": int64(1)}})

		res := Check(in, d)
		for _, a := range d.Actions {
			checkUnchanged(t, in, a)
		}

		var cooldownEnds time.Time // the earliest end of a cooldown that refused
		for _, n := range res.Notes {
			if end := lastChange[n.Target].Add(spec.Safety.Cooldown.Duration); n.Reason == Cooldown && (cooldownEnds.IsZero() || end.Before(cooldownEnds)) {
				cooldownEnds = end
			}
		}
		if !res.CooldownEnds.Equal(cooldownEnds) || !cooldownEnds.IsZero() && !cooldownEnds.After(now) {
			t.Fatalf("cooldowns end at %s, said %s (now %s)", cooldownEnds, res.CooldownEnds, now)
		}
		if maxActions > 0 && len(res.Actions) > int(maxActions) {
			t.Fatalf("%d actions, maxActions %d", len(res.Actions), maxActions)
		}
		seen := map[string]bool{}
		for _, a := range res.Actions {
			target := targets[a.Target]
			switch {
			case target == nil:
				t.Fatalf("action applied to %q, not a target of the loop", a.Target)
			case !target.Exists:
				t.Fatalf("action applied to %s, which does not exist", a.Target)
			case seen[a.Target]:
				t.Fatalf("%s changed twice in a tick", a.Target)
			}
			seen[a.Target] = true
			if last, ok := lastChange[a.Target]; ok && res.ActAt.Before(last.Add(spec.Safety.Cooldown.Duration)) && now.Before(last.Add(spec.Safety.Cooldown.Duration)) {
				t.Fatalf("%s changed at %s (acting at %s), inside its cooldown %s from %s", a.Target, now, res.ActAt, spec.Safety.Cooldown.Duration, last)
			}
			if res.ActAt.Sub(now) > in.Grace {
				t.Fatalf("acting at %s, more than the grace %s after %s", res.ActAt, in.Grace, now)
			}
			checkMetric(t, in.Metrics, a.Metric)
			if len(a.Set) == 0 {
				t.Fatalf("%s: an action that sets nothing", a.Target)
			}
			for field, v := range a.Set {
				checkField(t, target, field, v)
			}
		}
	})
}

// checkUnchanged judges one action alone: when the guard says it is already as asked, every
// value it asks for is the target's current one.
func checkUnchanged(t *testing.T, in Input, a decision.Action) {
	t.Helper()
	res := Check(in, decision.Decision{Actions: []decision.Action{a}})
	if len(res.Notes) != 1 || res.Notes[0] != (Note{Target: a.Target, Verdict: Unchanged, Message: "already as asked"}) {
		return
	}
	target := in.Targets[a.Target]
	for field, v := range a.Set {
		if !asksCurrent(target, field, v) {
			asked, _ := json.Marshal(v)
			t.Fatalf("%s: %s %s asked, current %s, said %q", a.Target, field, asked, describe(target.Current[field]), res.Notes[0])
		}
	}
}

// asksCurrent is whether a value asked for a field is the target's current one, in every part
// it sets.
func asksCurrent(target *actuators.Target, field string, v any) bool {
	same := func(a *resource.Quantity, b *resource.Quantity) bool { return a == nil || b != nil && a.Cmp(*b) == 0 }
	switch field {
	case "replicas":
		cur, _ := target.Current[field].(*int64)
		return cur != nil && *cur == v.(int64)
	case "hpa":
		cur, _ := target.Current[field].(*hpa.State)
		b := v.(hpa.Bounds)
		return cur != nil && (b.MinReplicas == nil || *b.MinReplicas == cur.MinReplicas) && (b.MaxReplicas == nil || *b.MaxReplicas == cur.MaxReplicas)
	case "bandwidth":
		cur, val := target.Current[field].(bandwidth.Value), v.(bandwidth.Value)
		return same(val.Egress, cur.Egress) && same(val.Ingress, cur.Ingress)
	case "resources":
		current := target.Current[field].(resources.Containers)
		for name, c := range v.(resources.Containers) {
			for res, q := range c.Requests {
				cq, ok := current[name].Requests[res]
				if !ok || !same(&q, &cq) {
					return false
				}
			}
			for res, q := range c.Limits {
				cq, ok := current[name].Limits[res]
				if !ok || !same(&q, &cq) {
					return false
				}
			}
		}
		return true
	case external.Field:
		current, _ := target.Current[field].(external.Settings)
		for name, q := range v.(external.Settings) {
			cq, ok := current[name]
			if !ok || !same(&q, &cq) {
				return false
			}
		}
		return true
	}
	return true // a field this check does not know yet: teach it the field's comparison
}

// describe is a current value as JSON, through the pointers.
func describe(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func quantity(s string) *resource.Quantity {
	q, err := decision.ParseQuantity(s)
	if err != nil {
		return nil
	}
	return &q
}

// quantityRange is nil when min or max does not parse; an empty step is none.
func quantityRange(lo, hi, step string) *v1alpha1.QuantityRange {
	l, h := quantity(lo), quantity(hi)
	if l == nil || h == nil {
		return nil
	}
	r := &v1alpha1.QuantityRange{Min: *l, Max: *h}
	if step != "" {
		if r.MaxStep = quantity(step); r.MaxStep == nil {
			return nil
		}
	}
	return r
}

func checkMetric(t *testing.T, metrics map[string]bool, metric string) {
	t.Helper()
	if metric != "" {
		if !metrics[metric] {
			t.Fatalf("applied on metric %q, stale or missing", metric)
		}
		return
	}
	for name, fresh := range metrics {
		if !fresh {
			t.Fatalf("applied, naming no metric, while %s is stale", name)
		}
	}
}

// checkField checks one field of an applied action against the target's bounds and state.
func checkField(t *testing.T, target *actuators.Target, field string, v any) {
	t.Helper()
	spec := target.Spec
	snap := spec.OutOfBounds == v1alpha1.Snap
	switch field {
	case "replicas":
		if spec.Replicas == nil {
			t.Fatalf("%s: replicas applied without replicas bounds", target.Name)
		}
		if target.Current["hpa"] != (*hpa.State)(nil) && target.Current["hpa"] != nil {
			t.Fatalf("%s: replicas applied while an HPA owns them", target.Name)
		}
		b := spec.Replicas
		var step *big.Rat
		if b.MaxStep != 0 {
			step = ratInt(int64(b.MaxStep))
		}
		var cur *big.Rat
		if c, _ := target.Current["replicas"].(*int64); c != nil {
			cur = ratInt(*c)
		}
		checkValue(t, target.Name+" replicas", ratInt(v.(int64)), ratInt(int64(b.Min)), ratInt(int64(b.Max)), step, cur, snap)
	case "hpa":
		state, _ := target.Current["hpa"].(*hpa.State)
		if spec.HPA == nil || state == nil {
			t.Fatalf("%s: hpa applied without hpa bounds or an HPA", target.Name)
		}
		if spec.HPA.Min < 1 {
			t.Fatalf("%s: hpa applied with bounds min %d", target.Name, spec.HPA.Min)
		}
		b, lo, hi := v.(hpa.Bounds), ratInt(int64(spec.HPA.Min)), ratInt(int64(spec.HPA.Max))
		minR, maxR := state.MinReplicas, state.MaxReplicas
		if b.MinReplicas != nil {
			checkValue(t, target.Name+" hpa minReplicas", ratInt(*b.MinReplicas), lo, hi, nil, ratInt(state.MinReplicas), snap)
			minR = *b.MinReplicas
		}
		if b.MaxReplicas != nil {
			checkValue(t, target.Name+" hpa maxReplicas", ratInt(*b.MaxReplicas), lo, hi, nil, ratInt(state.MaxReplicas), snap)
			maxR = *b.MaxReplicas
		}
		if minR > maxR {
			t.Fatalf("%s: hpa minReplicas %d above maxReplicas %d", target.Name, minR, maxR)
		}
	case "bandwidth":
		if spec.Bandwidth == nil {
			t.Fatalf("%s: bandwidth applied without bandwidth bounds", target.Name)
		}
		b := spec.Bandwidth
		r := v1alpha1.QuantityRange{Min: b.Min, Max: b.Max, MaxStep: b.MaxStep}
		val, cur := v.(bandwidth.Value), target.Current["bandwidth"].(bandwidth.Value)
		if val.Egress != nil {
			checkQuantity(t, target.Name+" egress", *val.Egress, r, cur.Egress, snap)
		}
		if val.Ingress != nil {
			checkQuantity(t, target.Name+" ingress", *val.Ingress, r, cur.Ingress, snap)
		}
	case "resources":
		checkResources(t, target, v.(resources.Containers), snap)
	case "external":
		if spec.External == nil {
			t.Fatalf("%s: external applied to a target that declares no settings", target.Name)
		}
		cur := target.Current["external"].(external.Settings)
		for name, q := range v.(external.Settings) {
			i := slices.IndexFunc(spec.External.Settings, func(s v1alpha1.ExternalSetting) bool { return s.Name == name })
			if i < 0 {
				t.Fatalf("%s: setting %s applied, which the target does not declare", target.Name, name)
			}
			var c *resource.Quantity
			if x, ok := cur[name]; ok {
				c = &x
			}
			checkQuantity(t, target.Name+" "+name, q, spec.External.Settings[i].QuantityRange, c, snap)
		}
	default:
		t.Fatalf("%s: field %q applied, which no actuator has", target.Name, field)
	}
}

func checkResources(t *testing.T, target *actuators.Target, val resources.Containers, snap bool) {
	t.Helper()
	b := target.Spec.Resources
	if b == nil {
		t.Fatalf("%s: resources applied without resources bounds", target.Name)
	}
	current := target.Current["resources"].(resources.Containers)
	for name, c := range val {
		cur, ok := current[name]
		if !ok || len(b.Containers) > 0 && !contains(b.Containers, name) {
			t.Fatalf("%s: container %s applied, undeclared or missing", target.Name, name)
		}
		for _, l := range []struct {
			what      string
			set, curr corev1.ResourceList
		}{{"requests", c.Requests, cur.Requests}, {"limits", c.Limits, cur.Limits}} {
			for res, q := range l.set {
				var r *v1alpha1.QuantityRange
				switch res {
				case corev1.ResourceCPU:
					r = b.CPU
				case corev1.ResourceMemory:
					r = b.Memory
				}
				if r == nil {
					t.Fatalf("%s: %s %s.%s applied without bounds", target.Name, name, l.what, res)
				}
				var cq *resource.Quantity
				if x, ok := l.curr[res]; ok {
					cq = &x
				}
				checkQuantity(t, target.Name+" "+name+" "+l.what+"."+string(res), q, *r, cq, snap)
			}
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Requests[res]
			if !hasReq {
				req, hasReq = cur.Requests[res]
			}
			lim, hasLim := c.Limits[res]
			if !hasLim {
				lim, hasLim = cur.Limits[res]
			}
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				t.Fatalf("%s: container %s would request %s %s above its limit %s", target.Name, name, req.String(), res, lim.String())
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func checkQuantity(t *testing.T, what string, v resource.Quantity, r v1alpha1.QuantityRange, cur *resource.Quantity, snap bool) {
	t.Helper()
	var step, c *big.Rat
	if r.MaxStep != nil {
		step = ratQuantity(*r.MaxStep)
	}
	if cur != nil {
		c = ratQuantity(*cur)
	}
	checkValue(t, what, ratQuantity(v), ratQuantity(r.Min), ratQuantity(r.Max), step, c, snap)
}

// checkValue is the guard's promise for one value v applied with bounds [lo, hi], a step
// (nil: no limit) and a current value (nil: unknown).
func checkValue(t *testing.T, what string, v, lo, hi, step, cur *big.Rat, snap bool) {
	t.Helper()
	if lo.Sign() < 0 || lo.Cmp(hi) > 0 || step != nil && step.Sign() <= 0 {
		t.Fatalf("%s: %s applied with broken bounds [%s, %s], step %v", what, v.RatString(), lo.RatString(), hi.RatString(), step)
	}
	inside := func(x *big.Rat) bool { return x.Cmp(lo) >= 0 && x.Cmp(hi) <= 0 }
	if cur == nil || inside(cur) {
		if !inside(v) {
			t.Fatalf("%s: %s applied outside [%s, %s]", what, v.RatString(), lo.RatString(), hi.RatString())
		}
		if cur != nil && step != nil && new(big.Rat).Abs(new(big.Rat).Sub(v, cur)).Cmp(step) > 0 {
			t.Fatalf("%s: %s applied more than a step %s from %s", what, v.RatString(), step.RatString(), cur.RatString())
		}
		return
	}
	// cur is outside: measure everything as a distance toward the bounds.
	bound, toward := hi, new(big.Rat).Sub(cur, v) // cur above hi: toward is how far down it moves
	if cur.Cmp(lo) < 0 {
		bound, toward = lo, new(big.Rat).Sub(v, cur)
	}
	gap := new(big.Rat).Abs(new(big.Rat).Sub(cur, bound))
	if snap {
		if v.Cmp(bound) != 0 {
			t.Fatalf("%s: from %s outside [%s, %s], Snap applied %s, not the nearest bound", what, cur.RatString(), lo.RatString(), hi.RatString(), v.RatString())
		}
		return
	}
	switch {
	case toward.Sign() <= 0:
		t.Fatalf("%s: from %s outside [%s, %s], %s applied does not move toward them", what, cur.RatString(), lo.RatString(), hi.RatString(), v.RatString())
	case step != nil && toward.Cmp(step) > 0:
		t.Fatalf("%s: from %s, %s applied is more than a step %s", what, cur.RatString(), v.RatString(), step.RatString())
	case !inside(v) && (v.Cmp(lo) < 0) == (cur.Cmp(lo) < 0) && (step == nil || toward.Cmp(step) != 0):
		t.Fatalf("%s: from %s, %s applied stops short outside [%s, %s]", what, cur.RatString(), v.RatString(), lo.RatString(), hi.RatString())
	case !inside(v) && toward.Cmp(gap) > 0:
		t.Fatalf("%s: from %s, %s applied overshoots [%s, %s]", what, cur.RatString(), v.RatString(), lo.RatString(), hi.RatString())
	}
}

func ratInt(i int64) *big.Rat { return new(big.Rat).SetInt64(i) }

func ratQuantity(q resource.Quantity) *big.Rat {
	c := q.DeepCopy()
	d := c.AsDec()
	r := new(big.Rat).SetInt(d.UnscaledBig())
	scale := int64(d.Scale())
	pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(max(scale, -scale)), nil)
	if scale > 0 {
		return r.Quo(r, new(big.Rat).SetInt(pow))
	}
	return r.Mul(r, new(big.Rat).SetInt(pow))
}
