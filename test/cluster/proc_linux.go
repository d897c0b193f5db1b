package cluster

import "syscall"

// sysProcAttr makes the kernel kill a component if the test binary dies
// without running its cleanups (a panic, or go test's -timeout), so that no
// controller keeps running against a dead API server.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
