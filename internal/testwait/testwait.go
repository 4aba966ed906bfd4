// Package testwait polls a condition in tests, with a deadline, instead
// of sleeping.
package testwait

import (
	"testing"
	"time"
)

// For polls cond every 5 ms until it holds, failing the test after 20 s
// with what it was waiting for.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
