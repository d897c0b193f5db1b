//go:build integration

// Package cli tests the governor binary as users run it, side by side with
// upstream opa at the version go.mod pins.
package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	repoRoot  string
	governor  string // path of the governor binary under test
	opaBinary string // path of upstream opa
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return 0, err
	}
	repoRoot = root
	bin, err := os.MkdirTemp("", "governor-cli-test")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(bin)
	governor = filepath.Join(bin, "governor")
	opaBinary = filepath.Join(bin, "opa")
	for out, pkg := range map[string]string{governor: "./cmd/governor", opaBinary: "github.com/open-policy-agent/opa"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = repoRoot
		if msg, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	return m.Run(), nil
}

// result is what a command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a binary in the repository root with optional stdin.
func run(t *testing.T, stdin string, bin string, args ...string) result {
	t.Helper()
	return runWith(t, repoRoot, stdin, bin, args...)
}

// runIn runs a binary in dir.
func runIn(t *testing.T, dir string, bin string, args ...string) result {
	t.Helper()
	return runWith(t, dir, "", bin, args...)
}

func runWith(t *testing.T, dir, stdin string, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewBufferString(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %v: %v", bin, args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}
