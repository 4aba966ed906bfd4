package raftnode

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/store"
)

// Node-to-node ops of verification: verify entries, recorded roots and
// trees, leaf entries, and repair.

// serveVerify puts a verification entry through the group's log and returns this replica's root at it.
func (n *Node) serveVerify(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	out, err := r.apply(ctx, store.Command{Op: store.OpVerify, Key: req.Key, Deep: req.Deep}.Encode())
	if err != nil {
		return resp, err
	}
	res, ok := out.(store.Result)
	if !ok || res.Root == nil {
		return resp, fmt.Errorf("group %d: verification entry applied without a root", r.id)
	}
	resp.Verified = verifiedOf(*res.Root)
	return resp, nil
}

// serveVerifyResult returns the root this replica recorded at a verification entry (and, deep, the one recomputed from its data).
func (n *Node) serveVerifyResult(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	root, ok := r.st.VerifiedRoot(string(req.Key))
	if !ok {
		return resp, fmt.Errorf("%w: no verification %s applied here yet", base.ErrNotFound, req.Key)
	}
	resp.Verified = verifiedOf(root)
	if req.Deep {
		t, done, err := r.st.VerifiedData(string(req.Key))
		switch {
		case !done:
			return resp, fmt.Errorf("%w: verification %s: still reading the data", base.ErrNotFound, req.Key)
		case err != nil:
			resp.Verified.DataError = err.Error()
		default:
			d := t.Root()
			resp.Verified.DataRoot = hex.EncodeToString(d[:])
		}
	}
	return resp, nil
}

// serveVerifyTree returns nodes of the Merkle tree a replica kept for a verification.
func (n *Node) serveVerifyTree(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	t, ok := r.st.VerifiedTree(string(req.Key))
	if req.Deep {
		var done bool
		t, done, _ = r.st.VerifiedData(string(req.Key))
		ok = done && t != nil
	}
	if !ok {
		return resp, fmt.Errorf("%w: no tree kept for verification %s", base.ErrNotFound, req.Key)
	}
	if req.Level > t.Depth() {
		return resp, fmt.Errorf("%w: level %d below the tree's depth %d", base.ErrBadRequest, req.Level, t.Depth())
	}
	ds, err := t.Nodes(req.Level, req.Indexes)
	if err != nil {
		return resp, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	resp.Digests = make([][]byte, len(ds))
	for i := range ds {
		resp.Digests[i] = ds[i][:]
	}
	return resp, nil
}

// serveLeafEntries returns a replica's entries in some leaves of its tree.
func (n *Node) serveLeafEntries(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	es, err := r.st.LeafEntries(req.Level, req.Indexes, req.Index)
	if err != nil {
		return resp, err
	}
	resp.Leaf = make([]protocol.LeafEntry, len(es))
	for i, e := range es {
		resp.Leaf[i] = protocol.LeafEntry{Key: e.Key, ModifyIndex: e.ModifyIndex, Digest: e.Digest[:]}
	}
	return resp, nil
}

// serveRepair reinstalls a diverged replica's state from the leader.
func (n *Node) serveRepair(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	resp.Repaired = n.repair(ctx, r, req.Index)
	return resp, nil
}
