//go:build !linux

package chaos

import "syscall"

// dieWithParent has no portable form outside Linux: nodes outlive a
// parent killed outright there (an interrupted one still stops them).
func dieWithParent() *syscall.SysProcAttr { return nil }
