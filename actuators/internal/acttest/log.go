package acttest

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var globalLogger sync.Once

// testLogger logs to t (shown on failure or with -v), and nothing once the test is over.
// controller-runtime's global logger, which a few of its parts use, discards.
func testLogger(t testing.TB) logr.Logger {
	globalLogger.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	return funcr.New(func(prefix, args string) {
		if !done.Load() {
			t.Log(prefix, args)
		}
	}, funcr.Options{Verbosity: 1})
}
