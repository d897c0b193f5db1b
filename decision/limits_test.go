package decision_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	. "governor.dev/governor/decision"
)

// TestValidateRefusesDecisionsOverTheLimits: a decision with too many
// actions or events, a string too long or a state too large breaks the
// contract, each problem naming the limit.
func TestValidateRefusesDecisionsOverTheLimits(t *testing.T) {
	small := webAndDB
	small.Limits = Limits{MaxActions: 1, MaxEvents: 2, MaxStringBytes: 10, MaxStateBytes: 20}
	cases := map[string]struct {
		decision string
		want     []string
	}{
		"within the limits": {`{"actions": [{"target": "web", "reason": "0123456789", "set": {"replicas": 2}}], "events": ["a", "b"], "state": {"k": "0123456789"}}`, nil},
		"too many actions": {`{"actions": [{"target": "web", "set": {"replicas": 2}}, {"target": "db", "set": {"replicas": 2}}]}`,
			[]string{"actions: 2 actions, at most 1 allowed"}},
		"too many events":   {`{"events": ["a", "b", "c"]}`, []string{"events: 3 events, at most 2 allowed"}},
		"an event too long": {`{"events": ["01234567890"]}`, []string{"events[0]: 11 bytes long, at most 10 allowed"}},
		"a reason too long": {`{"actions": [{"target": "web", "reason": "01234567890", "set": {"replicas": 2}}]}`,
			[]string{"actions[0].reason: 11 bytes long, at most 10 allowed"}},
		"a state too large": {`{"state": {"k": "01234567890123456789"}}`, []string{"state: 28 bytes as JSON, at most 20 allowed"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, problems := Validate(decode(t, c.decision), small)
			var got []string
			for _, p := range problems {
				got = append(got, p.String())
			}
			assert.Equal(t, c.want, got)
		})
	}
}

// TestValidateAppliesDefaultLimits: a contract without limits has the
// defaults, not none.
func TestValidateAppliesDefaultLimits(t *testing.T) {
	events := make([]string, DefaultMaxEvents+1)
	for i := range events {
		events[i] = `"e"`
	}
	_, problems := Validate(decode(t, `{"events": [`+strings.Join(events, ",")+`]}`), webAndDB)
	assert.Equal(t, []Problem{{Field: "events", Message: fmt.Sprintf("%d events, at most %d allowed", DefaultMaxEvents+1, DefaultMaxEvents)}}, problems)
}

// TestValidateDoesNotReadTooManyActions: a decision of many bad actions
// is one problem, not one per action.
func TestValidateDoesNotReadTooManyActions(t *testing.T) {
	actions := strings.Repeat(`{"target": "nope", "set": {}},`, 10000)
	_, problems := Validate(decode(t, `{"actions": [`+strings.TrimSuffix(actions, ",")+`]}`), webAndDB)
	assert.Equal(t, []Problem{{Field: "actions", Message: fmt.Sprintf("10000 actions, at most %d allowed", DefaultMaxActions)}}, problems)
}
