//go:build integration && linux

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"governor.dev/governor/api/v1alpha1"
	"governor.dev/governor/test/cluster"
	"governor.dev/governor/test/deployed"
)

// TestMetricsAuth runs governor as config/default deploys it (its
// ServiceAccount, RBAC and flags) and reads its metrics endpoint as three
// callers: one without a token (or with a token the API server does not
// know: 500, as controller-runtime answers it) is 401, a ServiceAccount without the ClusterRole
// governor-metrics-reader is 403, one bound to it reads /metrics and
// /bundles. Plain HTTP gets nothing.
func TestMetricsAuth(t *testing.T) {
	d := deployed.DeployOn(t, governorBinary(t), cluster.StartAPIServer(t))
	g := d.Start(t)
	g.WaitRunning(t, d)

	reader := d.MetricsToken(t)
	require.NoError(t, d.Admin.Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "stranger"}}))
	stranger := d.Token(t, "default", "stranger")

	for _, path := range []string{"/metrics", "/bundles"} {
		for _, c := range []struct {
			caller, token string
			code          int
			body          string
		}{
			{"no token", "", http.StatusUnauthorized, "Unauthorized"},
			// controller-runtime's filter answers a token the API server
			// rejects with 500 (its authenticator reports an error, not
			// "unauthenticated"): refused all the same.
			{"an unknown token", "not-a-token", http.StatusInternalServerError, "Authentication failed"},
			{"a ServiceAccount without metrics-reader", stranger, http.StatusForbidden, "Authorization denied for user system:serviceaccount:default:stranger"},
		} {
			code, body, err := g.Get(path, c.token)
			require.NoError(t, err, "%s, %s", path, c.caller)
			assert.Equal(t, c.code, code, "%s, %s: %s", path, c.caller, body)
			assert.Contains(t, body, c.body, "%s, %s", path, c.caller)
			assert.NotContains(t, body, "governor_", "%s, %s", path, c.caller)
			assert.NotContains(t, body, "reactive", "%s, %s", path, c.caller)
		}
	}

	code, body, err := g.Get("/metrics", reader)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "\ngovernor_bundle_active_revision{")
	assert.Contains(t, body, `controller_runtime_reconcile_total{controller="controlloop"`)

	code, body, err = g.Get("/bundles", reader)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	var statuses []v1alpha1.BundleStatus
	require.NoError(t, json.Unmarshal([]byte(body), &statuses), body)
	assert.Len(t, statuses, 3, "the shipped bundles: %s", body)

	// Plain HTTP to the HTTPS endpoint: Go's TLS server answers 400 and
	// nothing else.
	resp, err := http.Get("http://" + g.Metrics + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	g.Stop(t)
	assert.NotContains(t, strings.ToLower(g.Output()), "forbidden", g.Tail())
}
