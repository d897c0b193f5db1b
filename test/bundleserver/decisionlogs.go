package bundleserver

import (
	"compress/gzip"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
)

// DecisionLogs is a decision log service as OPA's decision log plugin
// uploads to it: POST /logs, a gzipped JSON array of events. It keeps the
// events. Serve it with httptest.NewServer.
type DecisionLogs struct {
	mu     sync.Mutex
	events []map[string]any
}

func (s *DecisionLogs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/logs" {
		http.NotFound(w, r)
		return
	}
	z, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []map[string]any
	if err := json.NewDecoder(z).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, batch...)
	s.mu.Unlock()
}

// Events are the events received so far, in order.
func (s *DecisionLogs) Events() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}
