package chaos

import "syscall"

// dieWithParent makes a local node end with the process that started
// it, however that ends (SIGKILL, SIGPIPE, a crash): a benchmark or a
// chaos run killed outright leaves no ringkvd behind. The kernel sends
// the signal when the thread that forked the node exits; the Go runtime
// does not end its threads unless a goroutine locked to one returns, and
// nothing here locks one, so that is when the process ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
