package warmstack

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stackOf runs a call that records its goroutine's stack.
func stackOf(t *testing.T, p *Pool) (string, bool) {
	t.Helper()
	stack := make(chan string, 1)
	record := func() { stack <- string(debug.Stack()) }
	if !p.TryRun(record) {
		return "", false
	}
	return <-stack, true
}

func TestTryRunRunsOnThePoolWhenAGoroutineIsIdle(t *testing.T) {
	p := New(2)
	for range 5 { // each goroutine is idle again once its call returned
		stack, ok := stackOf(t, p)
		require.True(t, ok, "the pool has idle goroutines")
		assert.Contains(t, stack, "warmstack.(*worker).serve", "the call ran on one of the pool's goroutines")
		assert.NotContains(t, stack, "TestTryRunRunsOnThePoolWhenAGoroutineIsIdle")
	}
}

func TestTryRunRefusesWhenEveryGoroutineIsBusy(t *testing.T) {
	p := New(1)
	release := make(chan struct{})
	started := make(chan struct{})
	finished := make(chan struct{})
	require.True(t, p.TryRun(func() { close(started); <-release; close(finished) }))
	<-started
	called := false
	assert.False(t, p.TryRun(func() { called = true }), "a call is never queued behind a busy one")
	assert.False(t, called)
	close(release)
	<-finished
	_, ok := stackOf(t, p) // may race the goroutine's return to idle: try until it is back
	for !ok {
		_, ok = stackOf(t, p)
	}
}

func TestAPoolOfNoneRunsNothing(t *testing.T) {
	assert.False(t, New(0).TryRun(func() { t.Error("called") }))
}
