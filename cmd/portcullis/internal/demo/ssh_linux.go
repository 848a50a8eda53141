package demo

import (
	"os/exec"
	"syscall"
)

// endWithParent has the kernel stop the child when the demo dies, even by
// SIGKILL, so no sshd is left listening.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
