package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// waitStopped polls until every thread of process pid is stopped: a
// SIGSTOP is only queued when kill returns, and a thread already on a
// core runs on until it is next interrupted. Without /proc (not Linux)
// there is nothing to read and it returns at once.
func waitStopped(pid int, timeout time.Duration) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return poll(ctx, time.Millisecond, func() error {
		running, err := runningThreads(dir)
		if err == nil && running > 0 {
			err = fmt.Errorf("process %d: %d threads still running after SIGSTOP", pid, running)
		}
		return err
	})
}

// runningThreads counts the threads under dir (/proc/PID/task) whose
// state is not stopped (T), traced (t), a zombie (Z) or dead (X).
func runningThreads(dir string) (int, error) {
	stats, err := filepath.Glob(filepath.Join(dir, "*", "stat"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name in parentheses, which may
		// itself hold ") ".
		s := string(b)
		i := strings.LastIndex(s, ") ")
		if i < 0 || i+2 >= len(s) {
			return 0, fmt.Errorf("%s: unreadable %q", f, s)
		}
		switch s[i+2] {
		case 'T', 't', 'Z', 'X':
		default:
			n++
		}
	}
	return n, nil
}
