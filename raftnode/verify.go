package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/store"
)

// ReplicaRoot is one replica's Merkle root at a verification point.
type ReplicaRoot struct {
	Node  NodeID `json:"node"`
	Index uint64 `json:"index,omitempty"`
	Root  string `json:"root,omitempty"`
	Error string `json:"error,omitempty"`
}

// GroupVerification compares a group's replicas at one log index.
type GroupVerification struct {
	Group    GroupID       `json:"group"`
	Index    uint64        `json:"index"`
	Root     string        `json:"root"`
	Agree    bool          `json:"agree"`
	Replicas []ReplicaRoot `json:"replicas"`
}

// Verify puts a verification entry through group g's log: every replica
// records its Merkle root when it applies that entry, so all roots are
// taken at exactly the same index. It then collects each replica's root
// and reports whether they agree. A replica that cannot answer within ctx
// counts as disagreeing, with the reason.
func (n *Node) Verify(ctx context.Context, g GroupID) (GroupVerification, error) {
	gi, ok := n.Layout().Group(g)
	if !ok {
		return GroupVerification{}, fmt.Errorf("%w: group %d", ErrNotFound, g)
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return GroupVerification{}, err
	}
	nonce := []byte(hex.EncodeToString(nb[:]))
	resp, err := n.do(ctx, Request{Op: opVerify, Group: g, Key: nonce})
	if err != nil {
		return GroupVerification{}, err
	}
	v := GroupVerification{Group: g, Index: resp.Verified.Index, Root: resp.Verified.Root, Agree: true}
	for _, id := range gi.Replicas {
		rr := n.replicaRoot(ctx, g, id, nonce)
		if rr.Error != "" || rr.Root != v.Root || rr.Index != v.Index {
			v.Agree = false
		}
		v.Replicas = append(v.Replicas, rr)
	}
	return v, nil
}

// VerifyAll verifies every group.
func (n *Node) VerifyAll(ctx context.Context) ([]GroupVerification, error) {
	var out []GroupVerification
	for _, g := range n.Layout().Groups {
		v, err := n.Verify(ctx, g.ID)
		if err != nil {
			return out, fmt.Errorf("group %d: %w", g.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// replicaRoot asks node id for the root it recorded for nonce, waiting for
// it to apply the verification entry.
func (n *Node) replicaRoot(ctx context.Context, g GroupID, id NodeID, nonce []byte) ReplicaRoot {
	// A healthy replica applies the entry within a heartbeat or two; one
	// that has not after a few seconds is reported, not waited for.
	ctx, cancel := context.WithTimeout(ctx, replicaVerifyWait)
	defer cancel()
	rr := ReplicaRoot{Node: id}
	req := Request{Op: opVerifyResult, Group: g, Key: nonce}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var resp Response
		var err error
		if id == n.cfg.ID {
			resp, err = n.Serve(ctx, req)
		} else if info, ok := n.Layout().Node(id); ok {
			resp, err = n.fwd.forward(ctx, info.HTTPAddr, req)
		} else {
			err = fmt.Errorf("node %s not in the layout", id)
		}
		if err == nil && resp.Verified != nil {
			rr.Index, rr.Root = resp.Verified.Index, resp.Verified.Root
			return rr
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
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

// Verified is a root recorded at a verification entry.
type Verified struct {
	Index uint64 `json:"index"`
	Root  string `json:"root"`
}

func verifiedOf(r store.Root) *Verified {
	return &Verified{Index: r.Index, Root: hex.EncodeToString(r.Hash[:])}
}

// SnapshotResult reports a forced snapshot of one local replica.
type SnapshotResult struct {
	Group GroupID `json:"group"`
	Index uint64  `json:"index,omitempty"`
	Taken bool    `json:"taken"`
	Note  string  `json:"note,omitempty"`
}

// SnapshotAll snapshots every local replica now (the metadata group
// included), so the log can be compacted behind it.
func (n *Node) SnapshotAll(ctx context.Context) ([]SnapshotResult, error) {
	out := []SnapshotResult{}
	for _, r := range append([]*replica{n.meta}, n.localReplicas()...) {
		res := SnapshotResult{Group: r.id}
		f := r.raft.Snapshot()
		err := await(ctx, f)
		switch {
		case err == nil:
			meta, _, oerr := f.Open()
			if oerr == nil {
				res.Index, res.Taken = meta.Index, true
			}
		case errors.Is(err, raft.ErrNothingNewToSnapshot):
			res.Note = "nothing new since the last snapshot"
		default:
			return out, fmt.Errorf("%w: group %d: %v", ErrUnavailable, r.id, err)
		}
		out = append(out, res)
	}
	return out, nil
}
