package collectors

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
)

func TestScope(t *testing.T) {
	hubble := func(src, dst *v1alpha1.FlowEndpoint) v1alpha1.CollectorSpec {
		return v1alpha1.CollectorSpec{Name: "jitter", Hubble: &v1alpha1.HubbleCollector{Source: src, Destination: dst}}
	}
	ns := func(n string) *v1alpha1.FlowEndpoint { return &v1alpha1.FlowEndpoint{Namespace: n, Workload: "w"} }
	promql := v1alpha1.CollectorSpec{Name: "p95", Prometheus: &v1alpha1.PrometheusCollector{Query: "up"}}
	push := v1alpha1.CollectorSpec{Name: "queue", Push: &v1alpha1.PushCollector{TokenSecret: "s"}}
	cases := []struct {
		name  string
		scope Scope
		c     v1alpha1.CollectorSpec
		want  string // "" when allowed
	}{
		{"own namespace", Scope{}, hubble(nil, ns("factory")), ""},
		{"own on one side, any source", Scope{}, hubble(&v1alpha1.FlowEndpoint{Workload: "client"}, ns("factory")), ""},
		{"another namespace", Scope{}, hubble(ns("factory"), ns("payments")),
			"collector jitter: hubble destination namespace payments is outside what loops in factory may observe (factory; governor run --observe-namespaces adds others)"},
		{"another namespace, allowed", Scope{Observe: []string{"payments"}}, hubble(ns("factory"), ns("payments")), ""},
		{"no namespace: the whole cluster", Scope{Observe: []string{"payments"}}, hubble(nil, &v1alpha1.FlowEndpoint{Workload: "w"}),
			"collector jitter: a hubble filter naming no namespace observes the whole cluster: give its source or destination one of factory, payments (governor run --observe-namespaces adds others)"},
		{"no filter at all", Scope{}, hubble(nil, nil),
			"collector jitter: a hubble filter naming no namespace observes the whole cluster: give its source or destination one of factory (governor run --observe-namespaces adds others)"},
		{"any namespace allowed", Scope{Observe: []string{AllNamespaces}}, hubble(nil, nil), ""},
		{"prometheus by default", Scope{}, promql,
			"collector p95: prometheus queries are not allowed to loops in namespace factory (PromQL reads any namespace's metrics; governor run --prometheus-namespaces lists the namespaces whose loops may query)"},
		{"prometheus, another namespace listed", Scope{Prometheus: []string{"payments"}}, promql,
			"collector p95: prometheus queries are not allowed to loops in namespace factory (PromQL reads any namespace's metrics; governor run --prometheus-namespaces lists the namespaces whose loops may query)"},
		{"prometheus, namespace listed", Scope{Prometheus: []string{"factory"}}, promql, ""},
		{"prometheus, every namespace", Scope{Prometheus: []string{AllNamespaces}}, promql, ""},
		{"push needs no scope", Scope{}, push, ""},
	}
	for _, tc := range cases {
		loop := &v1alpha1.ControlLoop{ObjectMeta: metav1.ObjectMeta{Namespace: "factory", Name: "l"},
			Spec: v1alpha1.ControlLoopSpec{Collectors: []v1alpha1.CollectorSpec{push, tc.c}}}
		err := tc.scope.Check(loop)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s: got %v\nwant %s", tc.name, err, tc.want)
		}
	}
}
