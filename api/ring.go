package api

import (
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// RingGroup describes one group on the ring.
type RingGroup struct {
	ID       base.GroupID  `json:"id"`
	Weight   int           `json:"weight"`
	VNodes   int           `json:"vnodes"`
	Share    float64       `json:"share"`
	Replicas []base.NodeID `json:"replicas"`
	Leader   base.NodeID   `json:"leader"`
	// Tokens are the group's positions on the ring (GET
	// /v1/ring?tokens=true): with them a client finds a key's group
	// itself (ring.FromState, ring.Lookup) and sends the request
	// straight to its leader.
	Tokens []uint64 `json:"tokens,omitempty"`
}

// State is the ring these groups form, for ring.FromState; it needs the
// groups' tokens.
func (r RingInfo) State() ring.State {
	st := ring.State{Epoch: r.Epoch, VNodes: r.VNodesPerWeight, Groups: make([]ring.GroupState, len(r.Groups))}
	for i, g := range r.Groups {
		st.Groups[i] = ring.GroupState{ID: g.ID, Weight: g.Weight, Tokens: g.Tokens}
	}
	return st
}

// RingInfo describes the ring.
type RingInfo struct {
	Epoch           uint64 `json:"epoch"`
	VNodesPerWeight int    `json:"vnodes_per_weight"`
	// Migration is the ring change in motion, if any.
	Migration *MigrationInfo `json:"migration,omitempty"`
	Groups    []RingGroup    `json:"groups"`
}

// MigrationInfo is a ring change's progress.
type MigrationInfo struct {
	Change    string         `json:"change"`
	NextEpoch uint64         `json:"next_epoch"`
	Done      int            `json:"transfers_done"`
	Transfers []TransferInfo `json:"transfers"`
}

// TransferInfo is one transfer's progress.
type TransferInfo struct {
	From   base.GroupID `json:"from"`
	To     base.GroupID `json:"to"`
	Phase  string       `json:"phase"`
	Ranges int          `json:"ranges"`
	Share  float64      `json:"share"`
	Keys   uint64       `json:"keys_copied"`
	Total  uint64       `json:"keys_total,omitempty"`
}

// Lookup is where a key lives.
type Lookup struct {
	Key string `json:"key"`
	// KeyBase64 is the key's exact bytes when they are not valid UTF-8.
	KeyBase64 string        `json:"key_base64,omitempty"`
	Hash      string        `json:"hash"`
	Group     base.GroupID  `json:"group"`
	Leader    base.NodeID   `json:"leader"`
	Replicas  []base.NodeID `json:"replicas"`
	Epoch     uint64        `json:"epoch"`
}
