package protocol

import (
	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/store"
)

// LeafEntry is store.LeafEntry on the wire.
type LeafEntry struct {
	Key         []byte `json:"key"`
	ModifyIndex uint64 `json:"modify_index"`
	Digest      []byte `json:"digest"`
}

// Verified is a root recorded at a verification entry.
type Verified struct {
	Index uint64 `json:"index"`
	Root  string `json:"root"`
	Depth int    `json:"depth,omitempty"`
	// DataRoot (deep verifications) is the root recomputed from the stored
	// entries; DataError says why it could not be.
	DataRoot  string `json:"data_root,omitempty"`
	DataError string `json:"data_error,omitempty"`
}

// ScanPage is a page of a range scan.
type ScanPage struct {
	Index   uint64             `json:"index"`
	Offset  uint64             `json:"offset"`
	Entries []store.MovedEntry `json:"entries,omitempty"`
	Cursor  []byte             `json:"cursor,omitempty"`
	Digest  string             `json:"digest"`
	Keys    uint64             `json:"keys"`
}

// KV is a key with its value and indexes.
type KV struct {
	Key         []byte       `json:"key"`
	Value       []byte       `json:"value,omitempty"`
	CreateIndex uint64       `json:"create_index"`
	ModifyIndex uint64       `json:"modify_index"`
	Group       base.GroupID `json:"group"`
}

// WriteResult describes an acknowledged write.
type WriteResult struct {
	Key       []byte       `json:"key"`
	Index     uint64       `json:"index"`      // the key's modify index after the write (0 after delete)
	Group     base.GroupID `json:"group"`      // the group that holds the key
	RaftIndex uint64       `json:"raft_index"` // the write's Raft log index in that group
	// Async writes: acknowledged at the leader's append, in RaftTerm;
	// Wait(Group, RaftIndex, RaftTerm) tells when a majority has it.
	Async    bool   `json:"async,omitempty"`
	RaftTerm uint64 `json:"raft_term,omitempty"`
}

// Response is the result of a Request.
type Response struct {
	Write     *WriteResult  `json:"write,omitempty"`
	Entry     *KV           `json:"entry,omitempty"`
	Entries   []KV          `json:"entries,omitempty"`
	RaftIndex uint64        `json:"raft_index,omitempty"` // applied index a read was served at
	Verified  *Verified     `json:"verified,omitempty"`
	Digests   [][]byte      `json:"digests,omitempty"`
	Leaf      []LeafEntry   `json:"leaf_entries,omitempty"`
	Repaired  *api.Repair   `json:"repaired,omitempty"`
	Tallies   []store.Tally `json:"tallies,omitempty"`
	Scan      *ScanPage     `json:"scan,omitempty"`
	Count     int           `json:"count,omitempty"`
	Cursor    []byte        `json:"cursor,omitempty"`
	// More says a scan page stopped at its limit or byte bound.
	More   bool               `json:"more,omitempty"`
	Change *layout.RingChange `json:"change,omitempty"`
	// ChangeSeq is a fence's position in its group's history, and
	// IndexFloor a modify index above every one its group gave before it.
	ChangeSeq  uint64 `json:"change_seq,omitempty"`
	IndexFloor uint64 `json:"index_floor,omitempty"`
	// Changes is a page of a group's change history.
	Changes *store.ChangesPage `json:"changes,omitempty"`
	// Done and Progress report a replica_step.
	Done     bool        `json:"done,omitempty"`
	Progress string      `json:"progress,omitempty"`
	ServedBy base.NodeID `json:"served_by"`
}
