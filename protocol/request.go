package protocol

import (
	"fmt"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// Op names what a Request asks of a node; its words are what the wire
// carries.
type Op string

// Operations a Request can carry.
const (
	OpPut          Op = "put"
	OpDelete       Op = "delete"
	OpGet          Op = "get"
	OpScan         Op = "scan"
	OpAddVoter     Op = "add_voter"
	OpRemoveServer Op = "remove_server"
	OpJoin         Op = "join"
	OpRemoveNode   Op = "remove_node"
	OpVerify       Op = "verify"        // through the log, on the leader
	OpVerifyResult Op = "verify_result" // a replica's recorded root, anywhere
	OpVerifyTree   Op = "verify_tree"   // nodes of a replica's recorded tree
	OpLeafEntries  Op = "leaf_entries"  // a replica's entries in some leaves
	OpRepair       Op = "repair"        // reinstall a replica's state from the leader
	OpWait         Op = "wait"          // until an index is committed, on the leader
	OpRangeStats   Op = "range_stats"   // keys and bytes in hash ranges, on the leader
	OpPinLeader    Op = "pin_leader"    // a group's preferred leader, on the metadata leader
	OpAddNonvoter  Op = "add_nonvoter"
	OpNodeState    Op = "node_state"   // drain or undrain a node, on the metadata leader
	OpReplicaStep  Op = "replica_step" // the next step of a replica move, on the group leader
	OpLayoutIndex  Op = "layout_index" // the metadata index a read must see, on the metadata leader
	OpRestoreLock  Op = "restore_lock" // take, renew or release the restore lock, on the metadata leader
	OpACL          Op = "acl"          // change access control, on the metadata leader
)

// Operations that move data between groups (resharding, restores).
const (
	OpRingChange Op = "ring_change" // start a ring change, on the metadata leader
	OpRingAbort  Op = "ring_abort"  // undo the ring change in motion, on the metadata leader
	OpRangeScan  Op = "range_scan"  // a page of the entries in ranges
	OpFence      Op = "fence"       // refuse client writes in ranges, through the log
	OpUnfence    Op = "unfence"     // take ranges over, through the log
	OpIngest     Op = "ingest"      // write moved entries, through the log
	OpDrop       Op = "drop"        // delete a page of keys in ranges, through the log
)

// OpChanges reads a page of a group's change history on its leader,
// waiting up to WaitMS for a change after Index under Prefix; FromNow
// asks only where the history ends. It travels alone (Forwarder.To),
// never batched with requests that answer at once.
const OpChanges Op = "changes"

// MaxChangesWait bounds an OpChanges request's wait.
const MaxChangesWait = 10 * time.Minute

// Progress words of a replica_step that ended a move it was asked to undo.
const (
	StepCompleted = "completed" // the source was already gone: the move could only complete
	StepAborted   = "aborted"
)

// Steps of OpRestoreLock.
const (
	RestoreBegin = "begin"
	RestoreRenew = "renew"
	RestoreEnd   = "end"
)

// MaxPageBytes bounds the keys and values of one page of a range scan
// and of one ingest.
const MaxPageBytes = 4 << 20

// maxRanges bounds the hash ranges one request may name.
const maxRanges = 1 << 16

// maxTreeNodes bounds the tree nodes or leaves one request may ask for.
const maxTreeNodes = 1 << 16

// Request is one operation on one group, as run locally or forwarded to the
// group leader's node.
type Request struct {
	Op          Op           `json:"op"`
	Group       base.GroupID `json:"group"`
	Key         []byte       `json:"key,omitempty"`
	Value       []byte       `json:"value,omitempty"`
	HasCAS      bool         `json:"has_cas,omitempty"`
	CAS         uint64       `json:"cas,omitempty"`
	Consistency Consistency  `json:"consistency,omitempty"`
	Prefix      []byte       `json:"prefix,omitempty"`
	After       []byte       `json:"after,omitempty"`
	Limit       int          `json:"limit,omitempty"`
	KeysOnly    bool         `json:"keys_only,omitempty"`
	// MaxBytes bounds one page of a scan (keys, values and a fixed cost
	// per entry); the answer says More when the scan stopped there.
	MaxBytes int `json:"max_bytes,omitempty"`
	// Routing is the routing version (Layout.RoutingVersion) the listing
	// node pages a scan under; a node whose layout routes otherwise
	// refuses the page with ErrMoved.
	Routing uint64           `json:"routing,omitempty"`
	Node    *layout.NodeInfo `json:"node,omitempty"`
	// Level and Indexes name tree nodes (verify_tree) or, with Level the
	// depth, leaves (leaf_entries); Index bounds entries (leaf_entries) or
	// the state to reinstall (repair).
	Level   int    `json:"level,omitempty"`
	Indexes []int  `json:"indexes,omitempty"`
	Index   uint64 `json:"index,omitempty"`
	// Async acknowledges a put or delete once the leader has appended it
	// (not once a majority has); Term qualifies a wait.
	Async bool   `json:"async,omitempty"`
	Term  uint64 `json:"term,omitempty"`
	// Deep asks a verification to recompute each replica's root from its
	// stored entries too (verify, verify_result), or names that recomputed
	// tree (verify_tree).
	Deep bool `json:"deep,omitempty"`
	// Ranges are arcs of the ring's hash space (range_stats and the
	// moving operations); Entries are moved entries (ingest); Change is a
	// ring change (ring_change).
	Ranges []ring.Range `json:"ranges,omitempty"`
	// Above limits a range scan's values to entries modified above it.
	Above   uint64             `json:"above,omitempty"`
	Entries []store.MovedEntry `json:"entries,omitempty"`
	Change  *layout.RingChange `json:"change,omitempty"`
	// Target is the group a metadata request is about (pin_leader), or
	// the source of the ranges a ring change's destination takes over
	// (unfence, with the source's history position at its fence in
	// Index).
	Target base.GroupID `json:"target,omitempty"`
	// Move is the replica move a replica_step advances, or undoes with
	// Abort.
	Move  *layout.ReplicaMove `json:"move,omitempty"`
	Abort bool                `json:"abort,omitempty"`
	// Force removes a node even below a majority of the replication
	// factor (remove_node).
	Force bool `json:"force,omitempty"`
	// LayoutIndex is the metadata index the layout that a scan is
	// filtered by must reflect: the listing node's, read from the
	// metadata leader.
	LayoutIndex uint64 `json:"layout_index,omitempty"`
	// Restore is the id of the restore lock that a fence, unfence or
	// ingest acts for (instead of a ring change's transfer), or that
	// restore_lock takes (RestoreStep begin), renews or releases.
	Restore     string `json:"restore,omitempty"`
	RestoreStep string `json:"restore_step,omitempty"`
	// Floor, on a ring change's unfence of its destination, is the
	// source's index floor at its fence: the destination's modify indexes
	// go above it.
	Floor uint64 `json:"floor,omitempty"`
	// ACL is the access control change an acl request proposes.
	ACL *layout.ACLChange `json:"acl,omitempty"`
	// WaitMS and FromNow qualify a changes request.
	WaitMS  int64 `json:"wait_ms,omitempty"`
	FromNow bool  `json:"from_now,omitempty"`
}

// Validate checks a request that arrived from the network.
func (r Request) Validate() error {
	if err := layout.CheckAnyGroup(r.Group); err != nil {
		return err
	}
	if err := r.validateOp(); err != nil {
		return err
	}
	return r.validateBounds()
}

// validateOp checks what r's op needs.
func (r Request) validateOp() error {
	switch r.Op {
	case OpPut, OpDelete, OpGet, OpVerify, OpVerifyResult, OpVerifyTree:
		if len(r.Key) == 0 {
			return fmt.Errorf("%w: empty key", base.ErrBadRequest)
		}
	case OpLeafEntries, OpRepair:
	case OpRangeStats:
		if len(r.Ranges) > maxRanges {
			return fmt.Errorf("%w: %d ranges (at most %d)", base.ErrBadRequest, len(r.Ranges), maxRanges)
		}
	case OpRangeScan, OpFence, OpUnfence, OpIngest, OpDrop:
		return r.validateMoving()
	case OpRestoreLock:
		return r.validateRestoreLock()
	case OpRingAbort:
	case OpACL:
		if r.Group != base.MetaGroup {
			return fmt.Errorf("%w: acl on group %d, not the metadata group", base.ErrBadRequest, r.Group)
		}
		if err := r.ACL.Check(); err != nil {
			return err
		}
	case OpPinLeader:
		if err := layout.CheckGroupID("pin_leader: group", r.Target); err != nil {
			return err
		}
	case OpRingChange:
		if r.Change == nil {
			return fmt.Errorf("%w: ring change missing", base.ErrBadRequest)
		}
		if err := r.Change.Check(); err != nil {
			return err
		}
	case OpWait:
		if r.Index == 0 {
			return fmt.Errorf("%w: wait for index 0", base.ErrBadRequest)
		}
	case OpScan:
	case OpChanges:
		if err := layout.CheckGroupID("changes: group", r.Group); err != nil {
			return err
		}
		if r.WaitMS < 0 || r.WaitMS > MaxChangesWait.Milliseconds() {
			return fmt.Errorf("%w: changes: wait of %d ms (0 to %d)", base.ErrBadRequest, r.WaitMS, MaxChangesWait.Milliseconds())
		}
	case OpLayoutIndex:
		if r.Group != base.MetaGroup {
			return fmt.Errorf("%w: layout_index on group %d, not the metadata group", base.ErrBadRequest, r.Group)
		}
	case OpReplicaStep:
		if r.Move == nil || r.Move.To == "" || r.Move.Group != r.Group {
			return fmt.Errorf("%w: replica_step without a move of its group", base.ErrBadRequest)
		}
	case OpAddVoter, OpAddNonvoter, OpRemoveServer, OpJoin, OpRemoveNode, OpNodeState:
		if r.Node == nil || r.Node.ID == "" {
			return fmt.Errorf("%w: %s without a node", base.ErrBadRequest, r.Op)
		}
		if r.Op == OpJoin {
			if err := layout.CheckMember(*r.Node); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: unknown op %q", base.ErrBadRequest, r.Op)
	}
	return nil
}

// validateBounds checks the fields every op shares.
func (r Request) validateBounds() error {
	if r.Op == OpGet || r.Op == OpScan || r.Op == OpLayoutIndex {
		if _, err := ParseConsistency(string(r.Consistency)); err != nil {
			return err
		}
	}
	if r.Limit < 0 || r.MaxBytes < 0 {
		return fmt.Errorf("%w: negative limit", base.ErrBadRequest)
	}
	if r.Async && (r.HasCAS || (r.Op != OpPut && r.Op != OpDelete)) {
		return fmt.Errorf("%w: only plain puts and deletes can be acknowledged asynchronously (a compare-and-swap needs its outcome)", base.ErrBadRequest)
	}
	if r.Op == OpVerifyTree || r.Op == OpLeafEntries {
		if r.Level < 0 || r.Level > snapshot.MaxTreeDepth || len(r.Indexes) == 0 || len(r.Indexes) > maxTreeNodes {
			return fmt.Errorf("%w: %s: level %d with %d nodes", base.ErrBadRequest, r.Op, r.Level, len(r.Indexes))
		}
		for _, ix := range r.Indexes {
			if ix < 0 || ix >= 1<<r.Level {
				return fmt.Errorf("%w: %s: no node %d at level %d", base.ErrBadRequest, r.Op, ix, r.Level)
			}
		}
	}
	return nil
}

// validateMoving checks a request that moves data between groups.
func (r Request) validateMoving() error {
	if len(r.Ranges) == 0 || len(r.Ranges) > maxRanges {
		return fmt.Errorf("%w: %s with %d ranges (1 to %d)", base.ErrBadRequest, r.Op, len(r.Ranges), maxRanges)
	}
	if r.Op == OpIngest && (len(r.Entries) == 0 || len(r.Entries) > store.MaxIngest) {
		return fmt.Errorf("%w: ingest of %d entries (1 to %d)", base.ErrBadRequest, len(r.Entries), store.MaxIngest)
	}
	if r.Op == OpDrop && (r.Limit < 1 || r.Limit > 10000) {
		return fmt.Errorf("%w: drop limit %d (1 to 10000)", base.ErrBadRequest, r.Limit)
	}
	if r.Restore != "" {
		if r.Op == OpRangeScan || r.Op == OpDrop {
			return fmt.Errorf("%w: %s does not act for a restore", base.ErrBadRequest, r.Op)
		}
		return layout.CheckRestoreID(r.Restore)
	}
	return nil
}

// validateRestoreLock checks a take, renewal or release of the restore lock.
func (r Request) validateRestoreLock() error {
	if r.Group != base.MetaGroup {
		return fmt.Errorf("%w: restore_lock on group %d, not the metadata group", base.ErrBadRequest, r.Group)
	}
	if err := layout.CheckRestoreID(r.Restore); err != nil {
		return err
	}
	if r.RestoreStep != RestoreBegin && r.RestoreStep != RestoreRenew && r.RestoreStep != RestoreEnd {
		return fmt.Errorf("%w: restore_lock step %q (begin, renew or end)", base.ErrBadRequest, r.RestoreStep)
	}
	if r.RestoreStep == RestoreBegin {
		if r.Node == nil {
			return fmt.Errorf("%w: restore_lock begin without its node", base.ErrBadRequest)
		}
		return layout.CheckNodeID(r.Node.ID)
	}
	return nil
}

// IsWrite tells whether r changes state: a transport failure after it
// was sent leaves its outcome unknown.
func (r Request) IsWrite() bool {
	switch r.Op {
	case OpPut, OpDelete, OpVerify, OpAddVoter, OpAddNonvoter, OpRemoveServer, OpJoin, OpRemoveNode, OpNodeState, OpReplicaStep, OpFence, OpUnfence, OpIngest, OpDrop, OpRingChange, OpRingAbort, OpPinLeader, OpRestoreLock, OpACL:
		return true
	}
	return false
}
