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
// keeps its slots.

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

// nextTick is when a loop whose tick started at last ticks again on its
// interval: its first slot at least half an interval later, and never
// sooner than minInterval. A tick on time is followed by one a whole
// interval later; a woken tick, by the loop's next slot (the grid holds
// across wakes); a late one is put back on the grid.
func nextTick(last time.Time, interval, minInterval time.Duration, stagger float64) time.Time {
	return slotFrom(last.Add(max(interval/2, minInterval)), interval, stagger)
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
