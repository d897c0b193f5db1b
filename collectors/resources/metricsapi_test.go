//go:build integration

package resources_test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// metricsAPI is metrics.k8s.io v1beta1 as metrics-server serves it (behind the aggregator),
// over HTTPS: discovery, and the PodMetrics of a namespace with a labelSelector, as JSON with
// usage in metrics-server's own units (nanocores, kibibytes). envtest's API server cannot route
// an APIService to loopback, so the real metrics clientset talks to it directly.
type metricsAPI struct {
	srv *httptest.Server

	mu    sync.Mutex
	pods  []podMetrics
	mode  string // "" serves; "down" answers 503 as the aggregator does; "hang" never answers
	calls []string
}

// podMetrics is one PodMetrics item as the API writes it.
type podMetrics struct {
	Metadata   podMetricsMeta     `json:"metadata"`
	Timestamp  string             `json:"timestamp"`
	Window     string             `json:"window"`
	Containers []containerMetrics `json:"containers"`
}

type podMetricsMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	CreationTimestamp string            `json:"creationTimestamp"`
	Labels            map[string]string `json:"labels,omitempty"`
}

type containerMetrics struct {
	Name  string            `json:"name"`
	Usage map[string]string `json:"usage"`
}

func startMetricsAPI(t *testing.T) *metricsAPI {
	m := &metricsAPI{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apis/metrics.k8s.io/v1beta1", func(w http.ResponseWriter, r *http.Request) {
		if !m.available(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
			"resources": []map[string]any{
				{"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": []string{"get", "list"}},
				{"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": []string{"get", "list"}},
			},
		})
	})
	mux.HandleFunc("GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", func(w http.ResponseWriter, r *http.Request) {
		if !m.available(w, r) {
			return
		}
		sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, status(http.StatusBadRequest, "BadRequest", err.Error()))
			return
		}
		ns := r.PathValue("ns")
		items := []podMetrics{}
		m.mu.Lock()
		m.calls = append(m.calls, ns+"?"+r.URL.Query().Get("labelSelector"))
		for _, p := range m.pods {
			if p.Metadata.Namespace == ns && sel.Matches(labels.Set(p.Metadata.Labels)) {
				items = append(items, p)
			}
		}
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": map[string]any{}, "items": items,
		})
	})
	m.srv = httptest.NewTLSServer(mux)
	t.Cleanup(m.srv.Close)
	return m
}

// available answers as the aggregator does when metrics-server is down (or never answers, in
// mode "hang"), and reports whether the request may be served.
func (m *metricsAPI) available(w http.ResponseWriter, r *http.Request) bool {
	m.mu.Lock()
	mode := m.mode
	m.mu.Unlock()
	switch mode {
	case "down":
		writeJSON(w, http.StatusServiceUnavailable, status(http.StatusServiceUnavailable, "ServiceUnavailable", "the server is currently unable to handle the request"))
		return false
	case "hang":
		<-r.Context().Done()
		return false
	}
	return true
}

func (m *metricsAPI) setMode(mode string) {
	m.mu.Lock()
	m.mode = mode
	m.mu.Unlock()
}

// add reports a Pod's containers' usage, "container", "cpu", "memory" in threes, at ts.
func (m *metricsAPI) add(ns, name string, podLabels map[string]string, ts time.Time, usage ...string) {
	p := podMetrics{
		Metadata:  podMetricsMeta{Name: name, Namespace: ns, CreationTimestamp: time.Now().UTC().Format(time.RFC3339), Labels: podLabels},
		Timestamp: ts.UTC().Format(time.RFC3339),
		Window:    "15.012s",
	}
	for i := 0; i+2 < len(usage); i += 3 {
		p.Containers = append(p.Containers, containerMetrics{Name: usage[i], Usage: map[string]string{"cpu": usage[i+1], "memory": usage[i+2]}})
	}
	m.mu.Lock()
	m.pods = append(m.pods, p)
	m.mu.Unlock()
}

func (m *metricsAPI) lastCall() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.calls) == 0 {
		return ""
	}
	return m.calls[len(m.calls)-1]
}

// client is the real metrics clientset, configured as for a real API server: its host, and its
// CA.
func (m *metricsAPI) client(t *testing.T) metricsclient.Interface {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
	mc, err := metricsclient.NewForConfig(&rest.Config{Host: m.srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

func status(code int, reason, msg string) map[string]any {
	return map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{}, "status": "Failure",
		"message": msg, "reason": reason, "code": code}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint("test server: ", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
