package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// modulePath is the module whose root holds bin/k8s.
const modulePath = "governor.dev/governor"

// The components, by the names of their binaries in the assets directory and of their
// logs (<name>.log) in the log directory.
const (
	KubeAPIServer         = "kube-apiserver"
	Etcd                  = "etcd"
	Kubectl               = "kubectl"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kwok                  = "kwok"
)

// stageFiles are kwok's stage definitions (node fast + heartbeat, pod fast),
// copied from the kwok module into <assets>/stages by `make envtest-assets`.
var stageFiles = []string{
	"node-initialize.yaml",
	"node-heartbeat.yaml",
	"pod-ready.yaml",
	"pod-complete.yaml",
	"pod-delete.yaml",
}

// Assets returns the absolute path of <repo>/bin/k8s, the directory
// `make envtest-assets` builds the control plane into, after checking that
// every binary (and kwok's stage definitions) is there. The repository root
// is the nearest directory, from the working directory up, whose go.mod
// declares module governor.dev/governor; go test runs each package in its
// own directory, so any test of the main module finds it.
func Assets() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("localcluster: working directory: %w", err)
	}
	return assetsFrom(wd)
}

// assetsFrom is Assets, looking for the repository from dir up.
func assetsFrom(wd string) (string, error) {
	root, err := repoRoot(wd)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s")
	if err := CheckAssets(dir); err != nil {
		var missing *MissingAssetsError
		if errors.As(err, &missing) {
			missing.Root = root
		}
		return "", err
	}
	return dir, nil
}

// MissingAssetsError is a control plane directory that lacks binaries.
type MissingAssetsError struct {
	// Dir is the directory looked in.
	Dir string
	// Missing are the files not found there (or not executable), e.g.
	// "kube-apiserver", "stages/pod-ready.yaml".
	Missing []string
	// Root is the repository whose `make envtest-assets` builds Dir, when
	// known.
	Root string
}

func (e *MissingAssetsError) Error() string {
	where := ""
	if e.Root != "" {
		where = " (in " + e.Root + ")"
	}
	return fmt.Sprintf("localcluster: local control plane incomplete: %s missing from %s: run `make envtest-assets`%s to build it",
		strings.Join(e.Missing, ", "), e.Dir, where)
}

// CheckAssets checks that dir holds every binary Launch runs and kwok's
// stage definitions; when it does not, the error is a *MissingAssetsError.
func CheckAssets(dir string) error {
	return checkAssets(dir, true, KubeAPIServer, Etcd, Kubectl, KubeControllerManager, KubeScheduler, Kwok)
}

// assetsFor is dir, made absolute, once it holds bins; "" is Assets().
func assetsFor(dir string, bins ...string) (string, error) {
	if dir == "" {
		return Assets()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("localcluster: assets directory: %w", err)
	}
	stages := false
	for _, b := range bins {
		stages = stages || b == Kwok
	}
	if err := checkAssets(abs, stages, bins...); err != nil {
		return "", err
	}
	return abs, nil
}

func checkAssets(dir string, stages bool, bins ...string) error {
	var missing []string
	for _, name := range bins {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	if stages {
		for _, name := range stageFiles {
			if _, err := os.Stat(filepath.Join(dir, "stages", name)); err != nil {
				missing = append(missing, filepath.Join("stages", name))
			}
		}
	}
	if len(missing) > 0 {
		return &MissingAssetsError{Dir: dir, Missing: missing}
	}
	return nil
}

// repoRoot walks up from dir to the directory whose go.mod declares
// modulePath.
func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		if mod, err := moduleOf(filepath.Join(d, "go.mod")); err == nil && mod == modulePath {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("localcluster: no go.mod of module %s in %s or any parent directory", modulePath, dir)
		}
		d = parent
	}
}

// moduleOf returns the module path a go.mod declares.
func moduleOf(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			if i := strings.Index(rest, "//"); i >= 0 {
				rest = rest[:i]
			}
			return strings.Trim(strings.TrimSpace(rest), `"`+"`"), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no module directive")
}
