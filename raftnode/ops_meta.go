package raftnode

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// Node-to-node ops on the cluster layout and membership, served on the
// leader of the metadata group (or, for membership, of the group).

// serveLayoutIndex returns the metadata index a read must see (on the metadata leader).
func (n *Node) serveLayoutIndex(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if r != n.meta {
		return resp, fmt.Errorf("%w: layout_index on group %d", base.ErrBadRequest, r.id)
	}
	index, err := r.readIndex(ctx, req.Consistency)
	if err != nil {
		return resp, err
	}
	resp.RaftIndex = index
	return resp, nil
}

// servePinLeader records a group's preferred leader in the layout.
func (n *Node) servePinLeader(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	_, err := r.apply(ctx, mustJSON(layout.Command{Op: layout.OpPinLeader, Group: req.Target, Node: req.Node}))
	return resp, err
}

// serveACL applies an access control change to the layout and returns the metadata index at or past it.
func (n *Node) serveACL(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if r != n.meta {
		return resp, fmt.Errorf("%w: acl on group %d", base.ErrBadRequest, r.id)
	}
	if _, err := r.apply(ctx, mustJSON(layout.Command{Op: layout.OpACL, ACL: req.ACL})); err != nil {
		return resp, err
	}
	_, resp.RaftIndex = r.meta.LayoutAt() // at or past the change
	return resp, nil
}

// serveRestoreLock takes, renews or releases the restore lock.
func (n *Node) serveRestoreLock(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	lock := &layout.RestoreLock{ID: req.Restore}
	if req.Node != nil {
		lock.Node = req.Node.ID
	}
	_, err := r.apply(ctx, mustJSON(layout.Command{Op: layout.Op("restore_" + req.RestoreStep), Restore: lock}))
	return resp, err
}

// serveMembership adds a voter or non-voter to the group, or removes a server.
func (n *Node) serveMembership(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	return resp, n.changeMembership(ctx, r, req)
}

// serveJoin adds a node to the cluster (on the metadata leader).
func (n *Node) serveJoin(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	return resp, n.joinLocal(ctx, *req.Node)
}

// serveRemoveNode removes a node, or starts draining it first.
func (n *Node) serveRemoveNode(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	held, err := n.removeLocal(ctx, req.Node.ID, req.Force)
	resp.Count = held
	return resp, err
}

// serveNodeState drains a node or lets it hold replicas again.
func (n *Node) serveNodeState(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	return resp, n.setDraining(ctx, req.Node.ID, req.Node.Draining)
}

// serveReplicaStep runs the next step of a replica move (on the group leader).
func (n *Node) serveReplicaStep(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	return n.replicaStep(ctx, r, *req.Move, req.Abort)
}
