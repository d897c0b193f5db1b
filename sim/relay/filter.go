package relay

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/labels"
)

// This file applies flow filters as Hubble does (cilium/pkg/hubble/filters, v1.20), for the
// fields the simulator supports. A FlowFilter matches when every field it sets matches; a
// request's whitelist matches when one of its filters does, its blacklist when none does.
// A filter that sets any other field is refused, never silently ignored.

// MessageTypeAccessLog is the Cilium monitor event type of L7 flows (Hubble's "l7").
const MessageTypeAccessLog = 129

// MessageTypeDrop is the Cilium monitor event type of packet drops.
const MessageTypeDrop = 1

type filterFunc func(*flowpb.Flow) bool

// supported are the FlowFilter fields the simulator applies.
var supported = map[protoreflect.Name]bool{
	"source_pod":           true,
	"destination_pod":      true,
	"source_workload":      true,
	"destination_workload": true,
	"source_label":         true,
	"destination_label":    true,
	"verdict":              true,
	"event_type":           true,
	"http_status_code":     true,
	"reply":                true,
}

// matcher is a request's whitelist and blacklist.
type matcher struct{ white, black []filterFunc }

func newMatcher(white, black []*flowpb.FlowFilter) (*matcher, error) {
	w, err := buildFilterList(white)
	if err != nil {
		return nil, fmt.Errorf("whitelist: %w", err)
	}
	b, err := buildFilterList(black)
	if err != nil {
		return nil, fmt.Errorf("blacklist: %w", err)
	}
	return &matcher{white: w, black: b}, nil
}

func (m *matcher) match(f *flowpb.Flow) bool {
	ok := len(m.white) == 0
	for _, fn := range m.white {
		if fn(f) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for _, fn := range m.black {
		if fn(f) {
			return false
		}
	}
	return true
}

func buildFilterList(ffs []*flowpb.FlowFilter) ([]filterFunc, error) {
	out := make([]filterFunc, 0, len(ffs))
	for i, ff := range ffs {
		fn, err := buildFilter(ff)
		if err != nil {
			return nil, fmt.Errorf("filter %d: %w", i, err)
		}
		out = append(out, fn)
	}
	return out, nil
}

// errUnsupported marks a filter field the simulator does not apply.
var errUnsupported = errors.New("not supported by the simulated relay")

func buildFilter(ff *flowpb.FlowFilter) (filterFunc, error) {
	var bad []string
	ff.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !supported[fd.Name()] {
			bad = append(bad, string(fd.Name()))
		}
		return true
	})
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, fmt.Errorf("fields %s: %w", strings.Join(bad, ", "), errUnsupported)
	}

	var fs []filterFunc
	if ts := ff.GetEventType(); len(ts) > 0 {
		fs = append(fs, byEventType(ts))
	}
	if vs := ff.GetVerdict(); vs != nil {
		fs = append(fs, func(f *flowpb.Flow) bool { return slices.Contains(vs, f.GetVerdict()) })
	}
	if rs := ff.GetReply(); rs != nil {
		fs = append(fs, byReply(rs))
	}
	for _, side := range []struct {
		pods, labels []string
		workloads    []*flowpb.Workload
		ep           func(*flowpb.Flow) *flowpb.Endpoint
		name         string
	}{
		{ff.GetSourcePod(), ff.GetSourceLabel(), ff.GetSourceWorkload(), (*flowpb.Flow).GetSource, "source"},
		{ff.GetDestinationPod(), ff.GetDestinationLabel(), ff.GetDestinationWorkload(), (*flowpb.Flow).GetDestination, "destination"},
	} {
		if side.pods != nil {
			fn, err := byPod(side.pods, side.ep)
			if err != nil {
				return nil, err
			}
			fs = append(fs, fn)
		}
		if len(side.workloads) > 0 {
			fs = append(fs, byWorkload(side.workloads, side.ep))
		}
		if side.labels != nil {
			fn, err := byLabels(side.labels, side.ep)
			if err != nil {
				return nil, fmt.Errorf("invalid %s label filter: %w", side.name, err)
			}
			fs = append(fs, fn)
		}
	}
	if codes := ff.GetHttpStatusCode(); codes != nil {
		if !l7Compatible(ff.GetEventType()) {
			return nil, errors.New("filtering by http status code requires the event type filter to only match 'l7' events")
		}
		fn, err := byHTTPStatus(codes)
		if err != nil {
			return nil, fmt.Errorf("invalid http status code filter: %w", err)
		}
		fs = append(fs, fn)
	}
	return func(f *flowpb.Flow) bool {
		for _, fn := range fs {
			if !fn(f) {
				return false
			}
		}
		return true
	}, nil
}

func byEventType(types []*flowpb.EventTypeFilter) filterFunc {
	return func(f *flowpb.Flow) bool {
		et := f.GetEventType()
		if et == nil {
			return false
		}
		for _, tf := range types {
			if t := tf.GetType(); t != 0 && et.GetType() != t {
				continue
			}
			if tf.GetMatchSubType() && tf.GetSubType() != et.GetSubType() {
				continue
			}
			return true
		}
		return false
	}
}

func byReply(rs []bool) filterFunc {
	return func(f *flowpb.Flow) bool {
		if len(rs) == 0 {
			return true
		}
		// As Hubble: a dropped flow of unknown direction counts as not a reply.
		if f.GetIsReply() == nil && f.GetVerdict() != flowpb.Verdict_DROPPED {
			return false
		}
		return slices.Contains(rs, f.GetIsReply().GetValue())
	}
}

// byPod is Hubble's namespaced-name filter: "ns/prefix", "ns/" (any pod in ns), "/prefix"
// (any namespace), "prefix" (namespace default).
func byPod(names []string, ep func(*flowpb.Flow) *flowpb.Endpoint) (filterFunc, error) {
	type nameFilter struct{ ns, prefix string }
	nfs := make([]nameFilter, 0, len(names))
	for _, name := range names {
		if name == "" {
			return nil, errors.New("invalid filter, name must not be empty")
		}
		ns, prefix := parseNamespaceName(name)
		nfs = append(nfs, nameFilter{ns, prefix})
	}
	return func(f *flowpb.Flow) bool {
		e := ep(f)
		ns, pod := e.GetNamespace(), e.GetPodName()
		if ns == "" && pod == "" {
			return false
		}
		return slices.ContainsFunc(nfs, func(n nameFilter) bool {
			return (n.prefix == "" || strings.HasPrefix(pod, n.prefix)) && (n.ns == "" || n.ns == ns)
		})
	}, nil
}

func parseNamespaceName(s string) (ns, name string) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) > 1:
		return parts[0], parts[1]
	case parts[0] == "":
		return "", ""
	default:
		return "default", parts[0]
	}
}

func byWorkload(wf []*flowpb.Workload, ep func(*flowpb.Flow) *flowpb.Endpoint) filterFunc {
	return func(f *flowpb.Flow) bool {
		for _, w := range ep(f).GetWorkloads() {
			if slices.ContainsFunc(wf, func(x *flowpb.Workload) bool {
				return (x.GetName() == "" || x.GetName() == w.GetName()) &&
					(x.GetKind() == "" || x.GetKind() == w.GetKind())
			}) {
				return true
			}
		}
		return false
	}
}

// byLabels matches the endpoint's Cilium labels ("k8s:app=web") against Kubernetes label
// selectors, where a key without a source ("app") matches any source and "k8s:app" only
// source k8s. One of the selectors must match.
func byLabels(selectors []string, ep func(*flowpb.Flow) *flowpb.Endpoint) (filterFunc, error) {
	sels := make([]labels.Selector, 0, len(selectors))
	for _, s := range selectors {
		t, err := translateSelector(s)
		if err != nil {
			return nil, err
		}
		sel, err := labels.Parse(t)
		if err != nil {
			return nil, err
		}
		sels = append(sels, sel)
	}
	return func(f *flowpb.Flow) bool {
		ls := parseCiliumLabels(ep(f).GetLabels())
		return slices.ContainsFunc(sels, func(s labels.Selector) bool { return s.Matches(ls) })
	}, nil
}

// translateSelector rewrites every key of a selector to "source.key" ("app" becomes
// "any.app", "k8s:app" becomes "k8s.app"), as Hubble does before parsing it.
func translateSelector(sel string) (string, error) {
	out := &strings.Builder{}
	rs := []rune(sel)
	i := 0
	for i < len(rs) {
		for i < len(rs) && (unicode.IsSpace(rs[i]) || rs[i] == '!') {
			out.WriteRune(rs[i])
			i++
		}
		key := &strings.Builder{}
		for i < len(rs) && !unicode.IsSpace(rs[i]) && rs[i] != '=' && rs[i] != '!' && rs[i] != ',' {
			key.WriteRune(rs[i])
			i++
		}
		k := key.String()
		if !strings.Contains(k, ":") {
			k = "any:" + k
		}
		out.WriteString(strings.Replace(k, ":", ".", 1))
		nesting := 0
		for i < len(rs) {
			r := rs[i]
			i++
			switch r {
			case '(':
				nesting++
			case ')':
				nesting--
			}
			out.WriteRune(r)
			if r == ',' && nesting == 0 {
				break
			}
		}
	}
	return out.String(), nil
}

// ciliumLabel is one "source:key=value" label of an endpoint.
type ciliumLabel struct{ source, key, value string }

// ciliumLabels implements labels.Labels for keys in the form "source.key", source "any"
// matching every source.
type ciliumLabels []ciliumLabel

func parseCiliumLabels(ss []string) ciliumLabels {
	out := make(ciliumLabels, 0, len(ss))
	for _, s := range ss {
		src, rest := parseSource(s, ':')
		if src == "" {
			src = "unspec"
		}
		k, v, _ := strings.Cut(rest, "=")
		out = append(out, ciliumLabel{source: src, key: k, value: v})
	}
	return out
}

func parseSource(s string, delim byte) (src, rest string) {
	if s == "" {
		return "", ""
	}
	if s[0] == '$' {
		return "reserved", s[1:]
	}
	i := strings.IndexByte(s, delim)
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

func (ls ciliumLabels) Lookup(key string) (string, bool) {
	src, k := parseSource(key, '.')
	if src == "" || src == "unspec" {
		src = "any"
	}
	for _, l := range ls {
		if (src == "any" || src == l.source) && l.key == k {
			return l.value, true
		}
	}
	return "", false
}

func (ls ciliumLabels) Has(key string) bool {
	_, ok := ls.Lookup(key)
	return ok
}

func (ls ciliumLabels) Get(key string) string {
	v, _ := ls.Lookup(key)
	return v
}

func l7Compatible(types []*flowpb.EventTypeFilter) bool {
	if len(types) == 0 {
		return true
	}
	return slices.ContainsFunc(types, func(t *flowpb.EventTypeFilter) bool { return t.GetType() == MessageTypeAccessLog })
}

var (
	httpStatusFull   = regexp.MustCompile(`^[1-5][0-9]{2}$`)
	httpStatusPrefix = regexp.MustCompile(`^[1-5][0-9]?\+$`)
)

func byHTTPStatus(codes []string) (filterFunc, error) {
	var full, prefix []string
	for _, s := range codes {
		switch {
		case httpStatusFull.MatchString(s):
			full = append(full, s)
		case httpStatusPrefix.MatchString(s):
			prefix = append(prefix, strings.TrimSuffix(s, "+"))
		default:
			return nil, fmt.Errorf("invalid status code prefix: %q", s)
		}
	}
	return func(f *flowpb.Flow) bool {
		h := f.GetL7().GetHttp()
		if h == nil || h.GetCode() == 0 {
			return false
		}
		c := fmt.Sprintf("%03d", h.GetCode())
		return slices.Contains(full, c) || slices.ContainsFunc(prefix, func(p string) bool { return strings.HasPrefix(c, p) })
	}, nil
}
