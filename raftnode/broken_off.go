//go:build !ringkv_broken

package raftnode

// Release builds cannot misbehave: these are constants the compiler folds
// away. Builds with the ringkv_broken tag replace them (broken_on.go) so
// that tests can show the fault-injection harness catching the mistakes.
const (
	brokenStaleReads      = false
	brokenAckBeforeCommit = false
)
