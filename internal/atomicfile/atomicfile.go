// Package atomicfile writes a file whole or not at all: into a temporary file in the same
// directory, synced, then renamed over the path. Readers never see a partial file, and on
// error the path is left as it was.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes path (mode 0644) with write, through a temporary file renamed over path once
// write succeeded; on error the temporary file is removed.
func Write(path string, write func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			// Already failing: the error to report is err. Close may find the file
			// closed already, and a temporary file Remove cannot delete is only a
			// hidden leftover beside path, which stays as it was.
			_ = f.Close()
			_ = os.Remove(f.Name())
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
