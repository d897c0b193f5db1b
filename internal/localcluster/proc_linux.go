package localcluster

import "syscall"

// sysProcAttr makes the kernel kill a component if the process that started
// it dies without stopping it (a test binary's panic or go test's -timeout, a
// killed demo), so that no controller keeps running against a dead API server.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
