package push_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"governor.dev/governor/collectors/push"
)

// A controller that watches some namespaces takes pushes only for loops
// there: a loop elsewhere, even with its right token, gets the answer of a
// loop that does not exist, and no Secret is read for it.
func TestPushOnlyToWatchedNamespaces(t *testing.T) {
	c, secretReads := fakeAPI(t)
	const remote = "192.0.2.1:1000"
	_, stranger, _ := post(push.NewServer(c, push.Options{}).Handler(), remote, obsPath("ns", "nope"), tokenA, `{"load": 1}`)

	h := push.NewServer(c, push.Options{Namespaces: []string{"other"}}).Handler()
	code, body, _ := post(h, remote, obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, stranger, body)
	assert.Zero(t, secretReads.Load())

	h = push.NewServer(c, push.Options{Namespaces: []string{"other", "ns"}}).Handler()
	code, body, _ = post(h, remote, obsPath("ns", "factory"), tokenA, `{"load": 1}`)
	require.Equal(t, http.StatusNoContent, code, body)
}
