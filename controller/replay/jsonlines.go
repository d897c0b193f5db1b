package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// readJSONLines reads one T a line from r, named name in errors: blank lines
// and lines starting with # are skipped, unknown fields are refused, and
// numbers decoded into any stay json.Number (exact). accept checks each
// record, given its place as "name:line"; the error it returns is reported
// at that place.
func readJSONLines[T any](r io.Reader, name string, accept func(record *T, at string) error) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		at := fmt.Sprintf("%s:%d", name, line)
		var record T
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&record); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if err := accept(&record, at); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		out = append(out, record)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
