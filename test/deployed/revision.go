package deployed

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// StampRevision sets the revision in the .manifest of the bundle in dir,
// whatever it was: a replica's own copy of a shipped bundle then names the
// replica in every tick's history.
func StampRevision(tb testing.TB, dir, revision string) {
	tb.Helper()
	path := filepath.Join(dir, ".manifest")
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var manifest map[string]any
	if err := json.Unmarshal(raw, &manifest); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	manifest["revision"] = revision
	if raw, err = json.Marshal(manifest); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		tb.Fatal(err)
	}
}
