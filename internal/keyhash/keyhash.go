// Package keyhash hashes keys (names, UIDs) to well-spread 64-bit values
// that every replica computes alike: for rendezvous hashing of loops to
// members, and for where in each period a loop ticks.
package keyhash

import "hash/fnv"

// Sum hashes parts, kept apart from one another, to a uint64.
func Sum(parts ...string) uint64 {
	h := fnv.New64a()
	for i, p := range parts {
		if i > 0 {
			_, _ = h.Write([]byte{0})
		}
		_, _ = h.Write([]byte(p))
	}
	return mix(h.Sum64())
}

// Fraction is Sum as a fraction in [0, 1).
func Fraction(parts ...string) float64 {
	return float64(Sum(parts...)>>11) / (1 << 53)
}

// mix is splitmix64's finalizer: FNV alone spreads similar keys poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}
