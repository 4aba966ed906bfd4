package verify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// Cluster is what a verification needs of the node that runs it.
type Cluster interface {
	// Self is the node running the verification.
	Self() base.NodeID
	// Layout is the node's current cluster layout.
	Layout() *layout.Layout
	// Do runs req on its group's leader, wherever that is.
	Do(ctx context.Context, req protocol.Request) (protocol.Response, error)
	// Ask runs req on node id itself: here, or forwarded to it.
	Ask(ctx context.Context, id base.NodeID, req protocol.Request) (protocol.Response, error)
	// Logger is where divergent replicas are reported.
	Logger() *slog.Logger
}

// Options qualifies a verification.
type Options struct {
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

// replicaVerifyWait bounds how long Group waits for one replica.
const replicaVerifyWait = 3 * time.Second

// replicaDeepVerifyWait bounds how long a deep verification waits for one
// replica to read all its data.
const replicaDeepVerifyWait = 2 * time.Minute

// run is one verification: its answer, and what its trees are asked by.
type run struct {
	v     api.GroupVerification
	nonce []byte
	depth map[base.NodeID]int // of each replica's recorded tree
}

// Group puts a verification entry through group g's log: every replica
// records its Merkle root (and tree) when it applies that entry, so all
// roots are taken at exactly the same index. It then collects each
// replica's root and reports whether they agree. A replica that cannot
// answer within ctx counts as disagreeing, with the reason. A replica whose
// root differs from the majority's is compared with an agreeing one subtree
// by subtree, and, unless o.NoRepair, its state is reinstalled from the
// leader by a checkpoint, while the node and the group keep serving.
func Group(ctx context.Context, c Cluster, g base.GroupID, o Options) (api.GroupVerification, error) {
	r, err := verify(ctx, c, g, o)
	return r.v, err
}

func verify(ctx context.Context, c Cluster, g base.GroupID, o Options) (run, error) {
	gi, ok := c.Layout().Group(g)
	if !ok {
		return run{}, fmt.Errorf("%w: group %d", base.ErrNotFound, g)
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return run{}, err
	}
	nonce := []byte(hex.EncodeToString(nb[:]))
	resp, err := c.Do(ctx, protocol.Request{Op: protocol.OpVerify, Group: g, Key: nonce, Deep: o.Deep})
	if err != nil {
		return run{}, err
	}
	if resp.Verified == nil {
		return run{}, fmt.Errorf("%w: group %d: the verification entry recorded no root", base.ErrUnavailable, g)
	}
	rn := run{nonce: nonce, depth: map[base.NodeID]int{}}
	v := api.GroupVerification{Group: g, Index: resp.Verified.Index, Root: resp.Verified.Root, Agree: true}
	for _, id := range gi.Replicas {
		rr, depth := replicaRoot(ctx, c, g, id, nonce, o.Deep)
		v.Replicas = append(v.Replicas, rr)
		rn.depth[id] = depth
	}
	v.Root = majorityRoot(v.Replicas, resp.Verified.Root)
	holds := func(rr *api.ReplicaRoot) bool {
		return rr.Root == v.Root && (!o.Deep || rr.DataRoot == v.Root)
	}
	var ref *api.ReplicaRoot
	for i := range v.Replicas {
		rr := &v.Replicas[i]
		if rr.Error == "" && holds(rr) && rr.Index == v.Index && (ref == nil || rr.Node == c.Self()) {
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
			d, err := rn.diffReplicas(ctx, c, g, v.Index, *ref, *rr, o.Deep && rr.DataRoot != rr.Root)
			if err != nil {
				rr.Error = "locating the difference: " + err.Error()
			}
			rr.Diff = d
		}
		c.Logger().Warn("replica diverges from its group", "group", uint32(g), "node", rr.Node, "index", v.Index,
			"root", rr.Root, "group_root", v.Root, "ranges", diffRanges(rr.Diff))
		if !o.NoRepair && ref != nil {
			rr.Repair = requestRepair(ctx, c, g, rr.Node, v.Index)
		}
	}
	rn.v = v
	return rn, nil
}

func diffRanges(d *api.ReplicaDiff) int {
	if d == nil {
		return 0
	}
	return len(d.Ranges)
}

// majorityRoot is the root most replicas report, or fallback on a tie.
func majorityRoot(rs []api.ReplicaRoot, fallback string) string {
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

// All verifies every group.
func All(ctx context.Context, c Cluster, o Options) ([]api.GroupVerification, error) {
	var out []api.GroupVerification
	for _, g := range c.Layout().Groups {
		v, err := Group(ctx, c, g.ID, o)
		if err != nil {
			return out, fmt.Errorf("group %d: %w", g.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// diffReplicas compares the trees two replicas recorded at the
// verification, level by level, then lists the differing keys when the
// differing leaves are few.
func (rn run) diffReplicas(ctx context.Context, c Cluster, g base.GroupID, index uint64, a, b api.ReplicaRoot, data bool) (*api.ReplicaDiff, error) {
	d := &api.ReplicaDiff{Against: a.Node}
	da, db := rn.depth[a.Node], rn.depth[b.Node]
	sa := &remoteTree{c: c, ctx: ctx, g: g, node: a.Node, nonce: rn.nonce, depth: da, data: data}
	sb := &remoteTree{c: c, ctx: ctx, g: g, node: b.Node, nonce: rn.nonce, depth: db, data: data}
	leaves, hashes, err := snapshot.DiffLevels(sa, sb)
	d.Hashes = hashes
	if err != nil {
		return d, err
	}
	t, err := snapshot.NewTree(da)
	if err != nil {
		return d, err
	}
	for i, l := range leaves {
		if i == maxDiffRanges {
			break
		}
		lo, hi := t.LeafRange(l)
		d.Ranges = append(d.Ranges, api.KeyRange{Leaf: l, From: fmt.Sprintf("%016x", lo), To: fmt.Sprintf("%016x", hi)})
	}
	if len(leaves) == 0 || len(leaves) > maxDiffKeyLeaves {
		d.MoreKeys = len(leaves) > 0
		return d, nil
	}
	ea, err := leafEntries(ctx, c, g, a.Node, da, leaves, index)
	if err != nil {
		return d, err
	}
	eb, err := leafEntries(ctx, c, g, b.Node, db, leaves, index)
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

// remoteTree is the tree a replica recorded at one verification.
type remoteTree struct {
	c     Cluster
	ctx   context.Context
	g     base.GroupID
	node  base.NodeID
	nonce []byte
	depth int
	data  bool // the tree recomputed from the entries (deep verifications)
}

func (t *remoteTree) Depth() int { return t.depth }

func (t *remoteTree) Nodes(level int, indexes []int) ([]snapshot.Digest, error) {
	resp, err := t.c.Ask(t.ctx, t.node, protocol.Request{Op: protocol.OpVerifyTree, Group: t.g, Key: t.nonce, Level: level, Indexes: indexes, Deep: t.data})
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

func leafEntries(ctx context.Context, c Cluster, g base.GroupID, id base.NodeID, depth int, leaves []int, index uint64) ([]store.LeafEntry, error) {
	resp, err := c.Ask(ctx, id, protocol.Request{Op: protocol.OpLeafEntries, Group: g, Level: depth, Indexes: leaves, Index: index})
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
func requestRepair(ctx context.Context, c Cluster, g base.GroupID, id base.NodeID, index uint64) *api.Repair {
	resp, err := c.Ask(ctx, id, protocol.Request{Op: protocol.OpRepair, Group: g, Index: index})
	if err != nil {
		return &api.Repair{Error: err.Error()}
	}
	if resp.Repaired == nil {
		return &api.Repair{Error: "no answer"}
	}
	return resp.Repaired
}

// replicaRoot asks node id for the root it recorded for nonce, waiting for
// it to apply the verification entry, and the depth of its tree.
func replicaRoot(ctx context.Context, c Cluster, g base.GroupID, id base.NodeID, nonce []byte, deep bool) (api.ReplicaRoot, int) {
	// A healthy replica applies the entry within a heartbeat or two; one
	// that has not after a few seconds is reported, not waited for. A deep
	// verification also reads all the data.
	wait := replicaVerifyWait
	if deep {
		wait = replicaDeepVerifyWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	rr := api.ReplicaRoot{Node: id}
	if _, ok := c.Layout().Node(id); !ok && id != c.Self() {
		rr.Error = fmt.Sprintf("node %s not in the layout", id)
		return rr, 0
	}
	req := protocol.Request{Op: protocol.OpVerifyResult, Group: g, Key: nonce, Deep: deep}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := c.Ask(ctx, id, req)
		if err == nil && resp.Verified != nil {
			rr.Index, rr.Root = resp.Verified.Index, resp.Verified.Root
			rr.DataRoot = resp.Verified.DataRoot
			if resp.Verified.DataError != "" {
				rr.Error = "reading the data: " + resp.Verified.DataError
			}
			return rr, resp.Verified.Depth
		}
		if err != nil && !errors.Is(err, base.ErrNotFound) {
			rr.Error = err.Error()
		}
		select {
		case <-ctx.Done():
			if rr.Error == "" {
				rr.Error = "did not apply the verification entry in time"
			}
			return rr, 0
		case <-tick.C:
		}
	}
}

// Tree returns group g's Merkle tree at a verification index: the group
// root most replicas agree on, with its leaves, as a replica holding it
// recorded them.
func Tree(ctx context.Context, c Cluster, g base.GroupID) (api.GroupTree, error) {
	rn, err := verify(ctx, c, g, Options{NoRepair: true})
	if err != nil {
		return api.GroupTree{}, err
	}
	v := rn.v
	for _, rr := range v.Replicas {
		depth := rn.depth[rr.Node]
		if rr.Error != "" || rr.Root != v.Root || depth == 0 {
			continue
		}
		idx := make([]int, 1<<depth)
		for i := range idx {
			idx[i] = i
		}
		src := &remoteTree{c: c, ctx: ctx, g: g, node: rr.Node, nonce: rn.nonce, depth: depth}
		leaves, err := src.Nodes(depth, idx)
		if err != nil {
			continue
		}
		t := api.GroupTree{Group: g, Index: v.Index, Root: v.Root, Depth: depth, Leaves: make([][]byte, len(leaves))}
		for i := range leaves {
			t.Leaves[i] = leaves[i][:]
		}
		return t, nil
	}
	return api.GroupTree{}, fmt.Errorf("%w: group %d: no replica holding the group root answered", base.ErrUnavailable, g)
}
