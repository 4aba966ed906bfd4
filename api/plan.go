package api

import (
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// Plan previews a ring change: what moves where, before anything moves.
type Plan struct {
	Change    string      `json:"change"`
	Epoch     uint64      `json:"epoch"`
	NextEpoch uint64      `json:"next_epoch"`
	Before    []PlanGroup `json:"before"`
	After     []PlanGroup `json:"after"`
	// Transfers aggregate the moving ranges by source and destination.
	Transfers []Transfer `json:"transfers"`
	// MovedShare is the share of the hash space that changes group;
	// IdealShare the least a change giving every group its weight's share
	// could move.
	MovedShare float64 `json:"moved_share"`
	IdealShare float64 `json:"ideal_share"`
	// Keys and bytes (keys plus values) that move, and all keys now.
	MovedKeys  uint64 `json:"moved_keys"`
	MovedBytes uint64 `json:"moved_bytes"`
	TotalKeys  uint64 `json:"total_keys"`
	// Ranges lists every moving range, when asked for.
	Ranges []ring.Move `json:"ranges,omitempty"`
}

// PlanGroup is a group's weight and share of the space on one side of a
// change.
type PlanGroup struct {
	ID     base.GroupID `json:"id"`
	Weight int          `json:"weight"`
	Share  float64      `json:"share"`
}

// Transfer is what one group hands to another in a change.
type Transfer struct {
	From   base.GroupID `json:"from"`
	To     base.GroupID `json:"to"`
	Ranges int          `json:"ranges"`
	Share  float64      `json:"share"`
	Keys   uint64       `json:"keys"`
	Bytes  uint64       `json:"bytes"`
}
