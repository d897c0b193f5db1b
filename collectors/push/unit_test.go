package push_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
)

// TestStartFailsOnABusyAddress: Start says why it cannot serve.
func TestStartFailsOnABusyAddress(t *testing.T) {
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	err := push.NewServer(nil, push.Options{Addr: busy.Listener.Addr().String()}).Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
}

func TestPushTLSNeedsCertAndKey(t *testing.T) {
	err := push.NewServer(nil, push.Options{Addr: "127.0.0.1:0", CertFile: "tls.crt"}).Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "both a certificate and a key")
	err = push.NewServer(nil, push.Options{Addr: "127.0.0.1:0", CertFile: "missing.crt", KeyFile: "missing.key"}).Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.crt")
}
