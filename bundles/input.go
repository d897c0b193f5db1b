package bundles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"governor.dev/governor/decision"
)

// maxInputBytes bounds an input document read from a file or stdin.
const maxInputBytes = 64 << 20

// ReadInput decodes one JSON object from r, keeping numbers exact. source
// names r in errors ("input.json", "stdin").
func ReadInput(r io.Reader, source string) (map[string]any, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, &InputError{Source: source, Reason: err.Error()}
	}
	if len(data) > maxInputBytes {
		return nil, &InputError{Source: source, Reason: fmt.Sprintf("larger than %d MiB", maxInputBytes>>20)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &InputError{Source: source, Reason: "empty: want a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &InputError{Source: source, Reason: "not valid JSON: " + jsonErrorAt(data, err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &InputError{Source: source, Reason: "more than one JSON value: want a single object"}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &InputError{Source: source, Reason: "the input document must be a JSON object, got " + decision.Describe(v)}
	}
	return obj, nil
}

// jsonErrorAt adds the line and column to a JSON syntax error.
func jsonErrorAt(data []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return err.Error()
	}
	// Offset counts the bytes read, the offending one included.
	line, col := 1, 1
	for _, b := range data[:min(max(int(se.Offset)-1, 0), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}
