package raftnode

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/verify"
)

// verifier is the node as the verification driver (package verify) sees
// it.
type verifier struct{ n *Node }

func (v verifier) Self() base.NodeID      { return v.n.cfg.ID }
func (v verifier) Layout() *layout.Layout { return v.n.Layout() }
func (v verifier) Logger() *slog.Logger   { return v.n.log }
func (v verifier) Do(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	return v.n.do(ctx, req)
}
func (v verifier) Ask(ctx context.Context, id base.NodeID, req protocol.Request) (protocol.Response, error) {
	return v.n.ask(ctx, id, req)
}

// Verify checks that group g's replicas hold the same data at one log
// index, locates and (unless o.NoRepair) repairs a divergent one: see
// verify.Group.
func (n *Node) Verify(ctx context.Context, g base.GroupID, o verify.Options) (api.GroupVerification, error) {
	return verify.Group(ctx, verifier{n}, g, o)
}

// VerifyAll verifies every group.
func (n *Node) VerifyAll(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
	return verify.All(ctx, verifier{n}, o)
}

// Tree returns group g's Merkle tree at a verification index: see
// verify.Tree.
func (n *Node) Tree(ctx context.Context, g base.GroupID) (api.GroupTree, error) {
	return verify.Tree(ctx, verifier{n}, g)
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

func verifiedOf(r store.Root) *protocol.Verified {
	return &protocol.Verified{Index: r.Index, Root: hex.EncodeToString(r.Hash[:]), Depth: r.Depth}
}

// SnapshotResult reports a forced snapshot of one local replica.
type SnapshotResult = api.SnapshotResult

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
