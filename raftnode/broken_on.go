//go:build ringkv_broken

package raftnode

import "os"

// Deliberately broken behaviour, for tests of the fault-injection harness
// only; compiled in with -tags ringkv_broken and chosen with RINGKV_BROKEN:
//
//	stale-reads        every read is served from the local replica, with no
//	                   leadership check (the mistake the linearizable read
//	                   path exists to prevent)
//	ack-before-commit  a write is acknowledged as soon as it is proposed,
//	                   before a majority has it
var (
	brokenStaleReads      = os.Getenv("RINGKV_BROKEN") == "stale-reads"
	brokenAckBeforeCommit = os.Getenv("RINGKV_BROKEN") == "ack-before-commit"
)
