package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

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
	Repair *protocol.Repair `json:"repair,omitempty"`
	depth  int
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

// GroupVerification compares a group's replicas at one log index.
type GroupVerification struct {
	Group base.GroupID `json:"group"`
	Index uint64       `json:"index"`
	// Root is the root most replicas hold (the leader's on a tie).
	Root     string        `json:"root"`
	Agree    bool          `json:"agree"`
	Replicas []ReplicaRoot `json:"replicas"`
	nonce    string
}

// VerifyOptions qualifies a verification.
type VerifyOptions struct {
	// NoRepair reports a divergent replica without reinstalling its state.
	NoRepair bool
	// Deep also recomputes every replica's root from its stored entries at
	// the verification index: it reads all the data, and finds damage the
	// incrementally kept tree cannot (a value changed on disk). Without it
	// only the kept trees are compared, which costs nothing.
	Deep bool
}

// Bounds on what a verification lists for one divergent replica.
const (
	maxDiffRanges    = 64
	maxDiffKeyLeaves = 16
	maxDiffKeys      = 32
)

// Verify puts a verification entry through group g's log: every replica
// records its Merkle root (and tree) when it applies that entry, so all
// roots are taken at exactly the same index. It then collects each
// replica's root and reports whether they agree. A replica that cannot
// answer within ctx counts as disagreeing, with the reason. A replica whose
// root differs from the majority's is compared with an agreeing one subtree
// by subtree, and, unless o.NoRepair, its state is reinstalled from the
// leader by a checkpoint, while the node and the group keep serving.
func (n *Node) Verify(ctx context.Context, g base.GroupID, o VerifyOptions) (GroupVerification, error) {
	gi, ok := n.Layout().Group(g)
	if !ok {
		return GroupVerification{}, fmt.Errorf("%w: group %d", base.ErrNotFound, g)
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return GroupVerification{}, err
	}
	nonce := []byte(hex.EncodeToString(nb[:]))
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpVerify, Group: g, Key: nonce, Deep: o.Deep})
	if err != nil {
		return GroupVerification{}, err
	}
	v := GroupVerification{Group: g, Index: resp.Verified.Index, Root: resp.Verified.Root, Agree: true, nonce: string(nonce)}
	for _, id := range gi.Replicas {
		v.Replicas = append(v.Replicas, n.replicaRoot(ctx, g, id, nonce, o.Deep))
	}
	v.Root = majorityRoot(v.Replicas, resp.Verified.Root)
	holds := func(rr *ReplicaRoot) bool {
		return rr.Root == v.Root && (!o.Deep || rr.DataRoot == v.Root)
	}
	var ref *ReplicaRoot
	for i := range v.Replicas {
		rr := &v.Replicas[i]
		if rr.Error == "" && holds(rr) && rr.Index == v.Index && (ref == nil || rr.Node == n.cfg.ID) {
			ref = rr
		}
	}
	for i := range v.Replicas {
		rr := &v.Replicas[i]
		if rr.Error != "" || !holds(rr) || rr.Index != v.Index {
			v.Agree = false
		}
		if rr.Root == "" || holds(rr) {
			continue
		}
		rr.Divergent = true
		if ref != nil {
			d, err := n.diffReplicas(ctx, g, nonce, v.Index, *ref, *rr, o.Deep && rr.DataRoot != rr.Root)
			if err != nil {
				rr.Error = "locating the difference: " + err.Error()
			}
			rr.Diff = d
		}
		n.log.Warn("replica diverges from its group", "group", uint32(g), "node", rr.Node, "index", v.Index,
			"root", rr.Root, "group_root", v.Root, "ranges", diffRanges(rr.Diff))
		if !o.NoRepair && ref != nil {
			rr.Repair = n.requestRepair(ctx, g, rr.Node, v.Index)
		}
	}
	return v, nil
}

func diffRanges(d *ReplicaDiff) int {
	if d == nil {
		return 0
	}
	return len(d.Ranges)
}

// majorityRoot is the root most replicas report, or fallback on a tie.
func majorityRoot(rs []ReplicaRoot, fallback string) string {
	count := map[string]int{}
	for _, r := range rs {
		if r.Error == "" && r.Root != "" {
			count[r.Root]++
		}
	}
	best, bestN, tie := fallback, count[fallback], false
	for root, c := range count {
		if c > bestN {
			best, bestN, tie = root, c, false
		} else if c == bestN && root != best {
			tie = true
		}
	}
	if tie && count[fallback] == bestN {
		return fallback
	}
	return best
}

// VerifyAll verifies every group.
func (n *Node) VerifyAll(ctx context.Context, o VerifyOptions) ([]GroupVerification, error) {
	var out []GroupVerification
	for _, g := range n.Layout().Groups {
		v, err := n.Verify(ctx, g.ID, o)
		if err != nil {
			return out, fmt.Errorf("group %d: %w", g.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// diffReplicas compares the trees two replicas recorded at the
// verification with nonce, level by level, then lists the differing keys
// when the differing leaves are few.
func (n *Node) diffReplicas(ctx context.Context, g base.GroupID, nonce []byte, index uint64, a, b ReplicaRoot, data bool) (*ReplicaDiff, error) {
	d := &ReplicaDiff{Against: a.Node}
	sa := &remoteTree{n: n, ctx: ctx, g: g, node: a.Node, nonce: nonce, depth: a.depth, data: data}
	sb := &remoteTree{n: n, ctx: ctx, g: g, node: b.Node, nonce: nonce, depth: b.depth, data: data}
	leaves, hashes, err := snapshot.DiffLevels(sa, sb)
	d.Hashes = hashes
	if err != nil {
		return d, err
	}
	t, err := snapshot.NewTree(a.depth)
	if err != nil {
		return d, err
	}
	for i, l := range leaves {
		if i == maxDiffRanges {
			break
		}
		lo, hi := t.LeafRange(l)
		d.Ranges = append(d.Ranges, KeyRange{Leaf: l, From: fmt.Sprintf("%016x", lo), To: fmt.Sprintf("%016x", hi)})
	}
	if len(leaves) == 0 || len(leaves) > maxDiffKeyLeaves {
		d.MoreKeys = len(leaves) > 0
		return d, nil
	}
	ea, err := n.leafEntries(ctx, g, a.Node, a.depth, leaves, index)
	if err != nil {
		return d, err
	}
	eb, err := n.leafEntries(ctx, g, b.Node, b.depth, leaves, index)
	if err != nil {
		return d, err
	}
	for _, k := range store.DiffEntries(ea, eb) {
		if len(d.Keys) == maxDiffKeys {
			d.MoreKeys = true
			break
		}
		d.Keys = append(d.Keys, string(k))
	}
	if !allUTF8(d.Keys) {
		for _, k := range d.Keys {
			d.KeysBase64 = append(d.KeysBase64, base64.StdEncoding.EncodeToString([]byte(k)))
		}
	}
	return d, nil
}

func allUTF8(ks []string) bool {
	for _, k := range ks {
		if !utf8.ValidString(k) {
			return false
		}
	}
	return true
}

// ask runs req on node id: here, or forwarded to it.
func (n *Node) ask(ctx context.Context, id base.NodeID, req protocol.Request) (protocol.Response, error) {
	if id == n.cfg.ID {
		return n.Serve(ctx, req)
	}
	info, ok := n.Layout().Node(id)
	if !ok {
		return protocol.Response{}, fmt.Errorf("%w: node %s not in the layout", base.ErrNotFound, id)
	}
	return n.fwd.Forward(ctx, info.RaftAddr, req)
}

// remoteTree is the tree a replica recorded at one verification.
type remoteTree struct {
	n     *Node
	ctx   context.Context
	g     base.GroupID
	node  base.NodeID
	nonce []byte
	depth int
	data  bool // the tree recomputed from the entries (deep verifications)
}

func (t *remoteTree) Depth() int { return t.depth }

func (t *remoteTree) Nodes(level int, indexes []int) ([]snapshot.Digest, error) {
	resp, err := t.n.ask(t.ctx, t.node, protocol.Request{Op: protocol.OpVerifyTree, Group: t.g, Key: t.nonce, Level: level, Indexes: indexes, Deep: t.data})
	if err != nil {
		return nil, err
	}
	out := make([]snapshot.Digest, len(resp.Digests))
	for i, d := range resp.Digests {
		if len(d) != len(out[i]) {
			return nil, fmt.Errorf("node %s sent a %d-byte hash", t.node, len(d))
		}
		copy(out[i][:], d)
	}
	return out, nil
}

func (n *Node) leafEntries(ctx context.Context, g base.GroupID, id base.NodeID, depth int, leaves []int, index uint64) ([]store.LeafEntry, error) {
	resp, err := n.ask(ctx, id, protocol.Request{Op: protocol.OpLeafEntries, Group: g, Level: depth, Indexes: leaves, Index: index})
	if err != nil {
		return nil, err
	}
	out := make([]store.LeafEntry, len(resp.Leaf))
	for i, e := range resp.Leaf {
		out[i] = store.LeafEntry{Key: e.Key, ModifyIndex: e.ModifyIndex}
		copy(out[i].Digest[:], e.Digest)
	}
	return out, nil
}

// requestRepair asks node id to reinstall its replica of g from the leader.
func (n *Node) requestRepair(ctx context.Context, g base.GroupID, id base.NodeID, index uint64) *protocol.Repair {
	resp, err := n.ask(ctx, id, protocol.Request{Op: protocol.OpRepair, Group: g, Index: index})
	if err != nil {
		return &protocol.Repair{Error: err.Error()}
	}
	if resp.Repaired == nil {
		return &protocol.Repair{Error: "no answer"}
	}
	return resp.Repaired
}

// replicaRoot asks node id for the root it recorded for nonce, waiting for
// it to apply the verification entry.
func (n *Node) replicaRoot(ctx context.Context, g base.GroupID, id base.NodeID, nonce []byte, deep bool) ReplicaRoot {
	// A healthy replica applies the entry within a heartbeat or two; one
	// that has not after a few seconds is reported, not waited for. A deep
	// verification also reads all the data.
	wait := replicaVerifyWait
	if deep {
		wait = replicaDeepVerifyWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	rr := ReplicaRoot{Node: id}
	req := protocol.Request{Op: protocol.OpVerifyResult, Group: g, Key: nonce, Deep: deep}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var resp protocol.Response
		var err error
		if id == n.cfg.ID {
			resp, err = n.Serve(ctx, req)
		} else if info, ok := n.Layout().Node(id); ok {
			resp, err = n.fwd.Forward(ctx, info.RaftAddr, req)
		} else {
			err = fmt.Errorf("node %s not in the layout", id)
		}
		if err == nil && resp.Verified != nil {
			rr.Index, rr.Root, rr.depth = resp.Verified.Index, resp.Verified.Root, resp.Verified.Depth
			rr.DataRoot = resp.Verified.DataRoot
			if resp.Verified.DataError != "" {
				rr.Error = "reading the data: " + resp.Verified.DataError
			}
			return rr
		}
		if err != nil && !errors.Is(err, base.ErrNotFound) {
			rr.Error = err.Error()
		}
		select {
		case <-ctx.Done():
			if rr.Error == "" {
				rr.Error = "did not apply the verification entry in time"
			}
			return rr
		case <-tick.C:
		}
	}
}

// replicaVerifyWait bounds how long Verify waits for one replica.
const replicaVerifyWait = 3 * time.Second

// replicaDeepVerifyWait bounds how long a deep Verify waits for one
// replica to read all its data.
const replicaDeepVerifyWait = 2 * time.Minute

func verifiedOf(r store.Root) *protocol.Verified {
	return &protocol.Verified{Index: r.Index, Root: hex.EncodeToString(r.Hash[:]), Depth: r.Depth}
}

// SnapshotResult reports a forced snapshot of one local replica.
type SnapshotResult struct {
	Group base.GroupID `json:"group"`
	Index uint64       `json:"index,omitempty"`
	Taken bool         `json:"taken"`
	Note  string       `json:"note,omitempty"`
}

// SnapshotAll snapshots every local replica now (the metadata group
// included), so the log can be compacted behind it.
func (n *Node) SnapshotAll(ctx context.Context) ([]SnapshotResult, error) {
	out := []SnapshotResult{}
	for _, r := range append([]*replica{n.meta}, n.localReplicas()...) {
		res := SnapshotResult{Group: r.id}
		_, err := snapshotNow(ctx, r.raft)
		switch {
		case err == nil:
			// The snapshot's metadata, not its data: opening a data
			// group's snapshot would read a checkpoint of its state.
			if metas, lerr := r.snaps.List(); lerr == nil && len(metas) > 0 {
				res.Index, res.Taken = metas[0].Index, true
			}
		case errors.Is(err, raft.ErrNothingNewToSnapshot):
			res.Note = "nothing new since the last snapshot"
		default:
			return out, fmt.Errorf("%w: group %d: %v", base.ErrUnavailable, r.id, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// snapshotNow takes a snapshot of one replica. A leader hands its
// leadership over now and then (balancing) and refuses to snapshot
// meanwhile, for a few milliseconds; and raft refuses to snapshot before
// the latest configuration entry is applied (a learner was just promoted,
// say): both are waited out, not reported.
func snapshotNow(ctx context.Context, r *raft.Raft) (raft.SnapshotFuture, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		latest, _ := strconv.ParseUint(r.Stats()["latest_configuration_index"], 10, 64)
		if latest <= r.CommitIndex() && r.AppliedIndex() < latest {
			select {
			case <-tick.C:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("the configuration entry at %d is not applied yet", latest)
			}
		}
		f := r.Snapshot()
		err := await(ctx, f)
		if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return f, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return f, err
		}
	}
}
