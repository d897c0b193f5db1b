package controller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The metrics endpoint is HTTPS behind the API server's authentication and
// authorisation unless told otherwise, and a named certificate that is not
// there is an error, not a silent self-signed one.
func TestMetricsServingOptions(t *testing.T) {
	secure, certs, err := MetricsServing{}.options(":8443", nil)
	require.NoError(t, err)
	assert.True(t, secure.SecureServing)
	assert.NotNil(t, secure.FilterProvider)
	assert.Nil(t, certs, "self-signed by controller-runtime")

	plain, _, err := MetricsServing{Insecure: true}.options(":8080", nil)
	require.NoError(t, err)
	assert.False(t, plain.SecureServing)
	assert.Nil(t, plain.FilterProvider)

	_, _, err = MetricsServing{CertDir: t.TempDir(), CertName: "tls.crt", KeyName: "tls.key"}.options(":8443", nil)
	assert.ErrorContains(t, err, "metrics certificate: ")
}
