package controller

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"governor.dev/governor/internal/keyhash"
)

// A loop's ticks, and its quiet status writes, fall on a grid of its own:
// a fixed point of every period (of Unix time), set by its key. Loops
// started together (a replica starting, a takeover) or woken together (a
// push to many, a Hubble window closing) would otherwise tick together for
// good, a thousand at once every interval and a thousand status writes at
// once every flush, each burst waiting on the CPU the others take. On the
// grid they spread over the period, and each replica that runs a loop
// keeps its slots. (A loop woken by new data ticks then, not on its slot:
// nextTick.)

// staggerOf is where in each period a loop's slots fall, as a fraction of
// the period in [0, 1).
func staggerOf(key types.NamespacedName) float64 {
	return keyhash.Fraction(key.Namespace, key.Name)
}

// slotFrom is the first slot of a grid at or after t: the grid's slots are
// stagger of the way into each period.
func slotFrom(t time.Time, period time.Duration, stagger float64) time.Time {
	if period <= 0 {
		return t
	}
	rem := (t.UnixNano() - int64(stagger*float64(period))) % int64(period)
	if rem < 0 {
		rem += int64(period)
	}
	if rem == 0 {
		return t
	}
	return t.Add(period - time.Duration(rem))
}

// tickStart is when a tick started, and whether a new observation or a
// spec change woke it (else its interval's timer did).
type tickStart struct {
	at    time.Time
	woken bool
}

// nextTick is when a loop whose tick started at last, and recorded itself
// at ticked (after reading the loop, and taking it over when it had to),
// ticks again. After a timed tick, on its next slot at least minInterval
// after ticked: a tick on time is followed by one a whole interval later,
// a late one or the first one by its next slot, so that the loop goes back
// to its slot at once. After a woken tick, a whole interval later, as if
// it had been due then: a loop woken by observations about as often as its
// interval (a Hubble window's, a pusher's) ticks on them alone, not on
// them and its slots too; the timed tick after the last of them takes it
// back to its slot. Sooner when a cooldown that refused an action ends
// first (cooldownEnds, zero when none did): ticks on slots meet a cooldown
// that is a multiple of the interval exactly at its end, and would find it
// still running by the milliseconds between a tick and its change's
// intent, doubling it. Never sooner than minInterval after ticked: the
// history records no two ticks closer.
func nextTick(last tickStart, ticked, cooldownEnds time.Time, interval, minInterval time.Duration, stagger float64) time.Time {
	soonest := ticked.Add(max(minInterval, time.Nanosecond))
	next := slotFrom(soonest, interval, stagger)
	if last.woken {
		next = latest(last.at.Add(interval), soonest)
	}
	if !cooldownEnds.IsZero() && cooldownEnds.Before(next) {
		next = latest(cooldownEnds, soonest)
	}
	return next
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// flushDue is when the status of quiet ticks, handed over last at handed,
// is handed over again: the first slot of the flush grid after it. The
// status is never older than the flush interval; a loop that acted hands
// over one quiet status sooner than that.
func flushDue(handed time.Time, flush time.Duration, stagger float64) time.Time {
	if handed.IsZero() {
		return handed // never handed over: at once
	}
	return slotFrom(handed.Add(time.Nanosecond), flush, stagger)
}
