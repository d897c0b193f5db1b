package push

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseReport feeds the push endpoint's body parser any bytes and asserts: it never
// panics; a refusal is a 400 with a one-line reason; an accepted body is one JSON object
// (as encoding/json reads it) whose keys are the values and at most a string "time", with no
// key twice, at least one value, every value a finite number that becomes a quantity, and a
// time no more than MaxFuture ahead.
func FuzzParseReport(f *testing.F) {
	for _, s := range []string{
		`{"jitter": 2.4, "load": 0.7, "time": "2026-11-21T10:00:00.250Z"}`,
		`{"time": 5, "x": -1e308}`,
		`{"a": 1, "a": 2}`,
		`{"a": "1"}`, `{"a": null}`, `{"a": [1]}`, `{"a": {}}`, `{"a": true}`,
		`{"a": 1e400}`, `{"a": 1, "time": "2099-01-01T00:00:00Z"}`, `{"time": "yesterday", "a": 1}`,
		`{}`, `[]`, `"x"`, `3`, `null`, ``, `   `, `{"a": 1} {"b": 2}`, `{"a": 1`, "{\"\xff\": 1}",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		rep, herr := parseReport(body, now)
		if herr != nil {
			if herr.code != http.StatusBadRequest || herr.msg == "" || strings.ContainsAny(herr.msg, "\n\r") {
				t.Fatalf("refused with %d %q", herr.code, herr.msg)
			}
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", body, err)
		}
		if len(rep.values) == 0 {
			t.Fatalf("accepted %q with no values", body)
		}
		keys := len(rep.values)
		if raw, ok := obj["time"]; ok && strings.HasPrefix(strings.TrimSpace(string(raw)), `"`) {
			keys++
		}
		if keys != len(obj) {
			t.Fatalf("accepted %q: %d values and time, %d keys (one twice?)", body, len(rep.values), len(obj))
		}
		for name, v := range rep.values {
			if _, ok := obj[name]; !ok || math.IsInf(v, 0) || math.IsNaN(v) {
				t.Fatalf("accepted %q: value %s = %v", body, name, v)
			}
			if _, err := Quantity(v); err != nil {
				t.Fatalf("accepted %q: %s = %v is no quantity: %v", body, name, v, err)
			}
		}
		if rep.at.After(now.Add(MaxFuture)) {
			t.Fatalf("accepted %q with a time %s ahead of %s", body, rep.at, now)
		}
	})
}
