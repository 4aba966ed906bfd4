package api

import "github.com/ringkv/ringkv/base"

// Verification answers POST /v1/verify and /v1/groups/{id}/verify.
type Verification struct {
	Agree  bool                `json:"agree"`
	Groups []GroupVerification `json:"groups"`
}

// GroupVerification compares a group's replicas at one log index.
type GroupVerification struct {
	Group base.GroupID `json:"group"`
	Index uint64       `json:"index"`
	// Root is the root most replicas hold (the leader's on a tie).
	Root     string        `json:"root"`
	Agree    bool          `json:"agree"`
	Replicas []ReplicaRoot `json:"replicas"`
}

// ReplicaRoot is one replica's Merkle root at a verification point.
type ReplicaRoot struct {
	Node  base.NodeID `json:"node"`
	Index uint64      `json:"index,omitempty"`
	Root  string      `json:"root,omitempty"`
	// DataRoot (deep verifications) is the root recomputed from the
	// replica's stored entries; it differs from Root when the data on disk
	// no longer matches the tree kept with it.
	DataRoot string `json:"data_root,omitempty"`
	Error    string `json:"error,omitempty"`
	// Divergent is set when the replica's root differs from the group's.
	Divergent bool         `json:"divergent,omitempty"`
	Diff      *ReplicaDiff `json:"diff,omitempty"`
	// Repair says what was done about a divergent replica.
	Repair *Repair `json:"repair,omitempty"`
}

// ReplicaDiff locates where a divergent replica differs from one holding
// the group's root, at the verification index.
type ReplicaDiff struct {
	Against base.NodeID `json:"against"`
	// Hashes is how many tree hashes were compared on each side: about
	// k·log(n) for k differing leaves, never the data.
	Hashes int `json:"hashes_compared"`
	// Ranges are the differing leaves: ranges of the key-hash space.
	Ranges []KeyRange `json:"ranges"`
	// Keys are the keys that differ, listed when the ranges are few; they
	// are read after the verification, leaving out later writes.
	Keys     []string `json:"keys,omitempty"`
	MoreKeys bool     `json:"more_keys,omitempty"`
	// KeysBase64 holds Keys' exact bytes, in the same order, when one of
	// them is not valid UTF-8 (which a JSON string cannot hold).
	KeysBase64 []string `json:"keys_base64,omitempty"`
}

// KeyRange is one leaf of a group's Merkle tree: every key whose hash
// (snapshot.KeyHash) lies in [From, To], both as 16 hex digits.
type KeyRange struct {
	Leaf int    `json:"leaf"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Repair reports a divergent replica's reinstallation from its leader.
type Repair struct {
	Done  bool        `json:"done"`
	From  base.NodeID `json:"from,omitempty"`
	Index uint64      `json:"index,omitempty"` // the checkpoint's index
	Error string      `json:"error,omitempty"`
}

// GroupTree is a group's Merkle tree at one index (GET
// /v1/groups/{id}/merkle).
type GroupTree struct {
	Group base.GroupID `json:"group"`
	Index uint64       `json:"index"`
	Root  string       `json:"root"`
	Depth int          `json:"depth"`
	// Leaves are the leaf hashes, in order.
	Leaves [][]byte `json:"leaves"`
}
