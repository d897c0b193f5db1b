package push_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
)

// requestsByCode reads governor_push_requests_total by code.
func requestsByCode(t *testing.T) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(push.Metrics()[0]))
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// Every answer of the endpoint is counted by its status code, refusals
// before anything else (the client's rate) too.
func TestRequestsCountedByCode(t *testing.T) {
	c, _ := fakeAPI(t)
	h := push.NewServer(c, push.Options{Limits: push.Limits{ClientRate: 1}}).Handler() // bursts of 2
	before := requestsByCode(t)
	code, body, _ := post(h, "192.0.2.1:1000", obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	require.Equal(t, http.StatusNoContent, code, body)
	code, _, _ = post(h, "192.0.2.1:1000", obsPath("ns", "factory"), "guess", `{"load": 1}`)
	require.Equal(t, http.StatusForbidden, code)
	code, _, _ = post(h, "192.0.2.1:1000", obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	require.Equal(t, http.StatusTooManyRequests, code)
	after := requestsByCode(t)
	for _, code := range []string{"204", "403", "429"} {
		assert.Equal(t, 1.0, after[code]-before[code], code)
	}
}
