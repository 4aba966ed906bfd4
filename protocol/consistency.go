package protocol

import (
	"fmt"

	"github.com/ringkv/ringkv/base"
)

// Consistency selects how a read is served.
type Consistency string

// Read consistency levels.
const (
	// Linearizable reads go to the leader, which confirms its leadership
	// with a quorum after the read arrives and waits until its state covers
	// everything committed before that. A deposed or paused leader cannot
	// pass the quorum check, so it cannot answer with stale data.
	Linearizable Consistency = "linearizable"
	// Lease reads go to the leader, which skips the quorum round while a
	// lease from its last successful round holds. Fast, but it trusts clocks
	// and scheduling: a leader paused past its lease may answer stale.
	Lease Consistency = "lease"
	// Stale reads are served from the local replica, whatever its lag.
	Stale Consistency = "stale"
)

// ParseConsistency validates a consistency name; "" means Linearizable.
func ParseConsistency(s string) (Consistency, error) {
	switch Consistency(s) {
	case "", Linearizable:
		return Linearizable, nil
	case Lease, Stale:
		return Consistency(s), nil
	}
	return "", fmt.Errorf("%w: unknown consistency %q (want linearizable, lease or stale)", base.ErrBadRequest, s)
}
