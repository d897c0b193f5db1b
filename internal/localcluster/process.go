package localcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// logTailLines is how much of a component's log LogTail shows.
const logTailLines = 80

// logFile is a component's output file.
type logFile struct {
	name string
	path string
	f    *os.File
	once sync.Once
}

func newLogFile(path, name string) (*logFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("localcluster: log file for %s: %w", name, err)
	}
	return &logFile{name: name, path: path, f: f}, nil
}

func (l *logFile) close() { l.once.Do(func() { _ = l.f.Close() }) }

// LogTail returns the last 80 lines of a component's log file, with a header
// that names it (test/cluster shows them when a test fails).
func LogTail(name, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("%s log: %v", name, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	skipped := 0
	if len(lines) > logTailLines {
		skipped = len(lines) - logTailLines
		lines = lines[skipped:]
	}
	return fmt.Sprintf("----- %s log (%s), last %d lines of %d -----\n%s", name, path, len(lines), len(lines)+skipped, bytes.Join(lines, []byte("\n")))
}

// process is a component (kube-controller-manager, kube-scheduler, kwok)
// running as a child process.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    *logFile
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before exited is closed

	stopping atomic.Bool // set before stop signals it: its exit is expected
}

// startProcess starts bin with args, its stdout and stderr going to
// <logDir>/<name>.log. The kernel kills it if this process dies (Linux).
func startProcess(logDir, name, bin string, args []string, env []string) (*process, error) {
	lf, err := newLogFile(filepath.Join(logDir, name+".log"), name)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf.f, lf.f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if _, err := fmt.Fprintf(lf.f, "# %s %q\n", bin, args); err != nil {
		lf.close()
		return nil, fmt.Errorf("localcluster: log file for %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		lf.close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: lf, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop terminates the process, gracefully first (SIGTERM), and kills it
// after 10 s; it says whether it had to.
func (p *process) stop() (killed bool) {
	p.stopping.Store(true)
	select {
	case <-p.exited:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return true
	}
}

// exitErr reports whether the process has exited on its own, and how.
func (p *process) exitErr() error {
	select {
	case <-p.exited:
		if p.stopping.Load() {
			return nil
		}
		if p.err == nil { // exit status 0, which Wait does not report as an error
			return fmt.Errorf("%s exited with status 0 (log: %s)", p.name, p.log.path)
		}
		return fmt.Errorf("%s exited: %w (log: %s)", p.name, p.err, p.log.path)
	default:
		return nil
	}
}

// waitHealthy polls https://<addr>/healthz (the components' secure port,
// self-signed) until it answers 200, the process exits, or ctx ends.
func (p *process) waitHealthy(ctx context.Context, addr string) error {
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // local test component, self-signed
	}
	defer client.CloseIdleConnections()
	url := "https://" + addr + "/healthz"
	var last error
	for {
		if err := p.exitErr(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close() // unread: only the status matters
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %w (last: %w)", p.name, ctx.Err(), last)
		case <-p.exited:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr, ok := l.Addr().(*net.TCPAddr)
	// Closing the listener is what frees the port for the component.
	if err := l.Close(); err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("not a TCP address")
	}
	return addr.Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
