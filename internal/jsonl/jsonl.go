// Package jsonl writes records as JSON lines: `governor demo` and `governor replay` write
// their loops' decision histories with it.
package jsonl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"governor.dev/governor/internal/atomicfile"
)

// Write writes records to path, one JSON value per line (encoding/json, HTML left
// unescaped), whole or not at all: into a temporary file in the same directory, synced,
// then renamed over path. On error path is left as it was.
func Write(path string, records []any) error {
	return atomicfile.Write(path, func(f *os.File) error {
		w := bufio.NewWriter(f)
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for i, r := range records {
			if err := enc.Encode(r); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		return w.Flush()
	})
}
