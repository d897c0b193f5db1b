// Package relaytest serves the simulated Hubble Relay (sim/relay) for a test: on a loopback
// port, stopped at t.Cleanup, failing the test when it cannot serve. It is the relay's test
// helpers, kept out of sim/relay so that programs linking the relay (governor demo) do not
// link package testing.
package relaytest

import (
	"net"
	"testing"
	"time"

	"governor.dev/governor/sim/relay"
)

// Start serves a relay for cfg on a loopback port, for a test; t.Cleanup stops it.
func Start(t testing.TB, cfg relay.Config) *relay.Relay {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := relay.New(cfg)
	serveOn(t, r, lis)
	return r
}

// Restart serves a stopped relay again on the address it served on before.
func Restart(t testing.TB, r *relay.Relay) {
	t.Helper()
	lis, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatalf("relay: listening again on %s: %v", r.Addr(), err)
	}
	serveOn(t, r, lis)
}

func serveOn(t testing.TB, r *relay.Relay, lis net.Listener) {
	served := make(chan error, 1)
	go func() { served <- r.Serve(lis) }()
	// Serve registers the server before it accepts; wait for that so Stop finds it.
	deadline := time.Now().Add(5 * time.Second)
	for r.Serving() != lis.Addr().String() {
		select {
		case err := <-served:
			t.Fatalf("relay: serving on %s: %v", lis.Addr(), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay: not serving on %s after 5s", lis.Addr())
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		r.Stop()
		if err := <-served; err != nil {
			t.Errorf("relay: serving on %s: %v", lis.Addr(), err)
		}
	})
}
