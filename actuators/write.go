package actuators

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"governor.dev/governor/decision"
)

// FieldManager is the server-side apply field manager of every write Governor makes.
const FieldManager = "governor"

// Backoff is how an actuator retries a write that lost a race (a Conflict on its
// resourceVersion precondition): six tries over about 0.3 s, long enough for a cached client to
// catch up with the write that won.
var Backoff = wait.Backoff{Steps: 6, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1}

// RetryOnConflict runs fn again while it returns a Conflict, with Backoff.
func RetryOnConflict(fn func() error) error {
	return retry.RetryOnConflict(Backoff, fn)
}

// ApplyOptions are the options of every apply: field manager "governor", forced (the loop is
// the declared authority over the fields it sends).
func ApplyOptions() []client.ApplyOption {
	return []client.ApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership}
}

// SubResourceApplyOptions are ApplyOptions for a subresource, with its body.
func SubResourceApplyOptions(body runtime.ApplyConfiguration) []client.SubResourceApplyOption {
	return []client.SubResourceApplyOption{client.FieldOwner(FieldManager), client.ForceOwnership,
		&client.SubResourceApplyOptions{SubResourceBody: body}}
}

// EqualQuantity reports whether the string s (an annotation value, say) parses to the same
// quantity as q. An empty or unparsable s is not equal.
func EqualQuantity(s string, q resource.Quantity) bool {
	if s == "" {
		return false
	}
	p, err := decision.ParseQuantity(s)
	return err == nil && p.Cmp(q) == 0
}
