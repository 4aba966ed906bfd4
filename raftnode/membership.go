package raftnode

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// Join adds a node to the cluster: to the metadata group, to the layout,
// then as a voter of every data group. It runs on the metadata leader
// (forwarded there if need be) and is idempotent for a node already in the
// cluster with the same addresses.
func (n *Node) Join(ctx context.Context, info NodeInfo) error {
	if info.ID == "" || info.HTTPAddr == "" || info.RaftAddr == "" {
		return fmt.Errorf("%w: join needs id, http_addr and raft_addr", ErrBadRequest)
	}
	if len(info.RaftAddr) > 255 {
		return fmt.Errorf("%w: raft_addr too long", ErrBadRequest)
	}
	_, err := n.do(ctx, Request{Op: opJoin, Group: MetaGroup, Node: &info})
	return err
}

// RemoveNode removes a node from every group and from the layout.
func (n *Node) RemoveNode(ctx context.Context, id NodeID) error {
	if id == "" {
		return fmt.Errorf("%w: empty node id", ErrBadRequest)
	}
	_, err := n.do(ctx, Request{Op: opRemoveNode, Group: MetaGroup, Node: &NodeInfo{ID: id}})
	return err
}

func (n *Node) joinLocal(ctx context.Context, info NodeInfo) error {
	l := n.Layout()
	if !l.Initialized {
		return fmt.Errorf("%w: cluster layout not initialised yet", ErrUnavailable)
	}
	if cur, ok := l.Node(info.ID); ok {
		if cur.RaftAddr != info.RaftAddr || cur.HTTPAddr != info.HTTPAddr {
			return fmt.Errorf("%w: node %s is already a member at %s/%s; remove it first", ErrConflict, info.ID, cur.HTTPAddr, cur.RaftAddr)
		}
	} else if len(l.Nodes) >= MaxNodes {
		return fmt.Errorf("%w: %d nodes already; every node holds every group and placing replicas on more nodes is not supported yet", ErrClusterFull, len(l.Nodes))
	}
	for _, other := range l.Nodes {
		if other.ID != info.ID && (other.RaftAddr == info.RaftAddr || other.HTTPAddr == info.HTTPAddr) {
			return fmt.Errorf("%w: address already used by node %s", ErrConflict, other.ID)
		}
	}
	if err := n.changeMembership(ctx, n.meta, Request{Op: opAddVoter, Group: MetaGroup, Node: &info}); err != nil {
		return err
	}
	if _, err := n.meta.apply(ctx, mustJSON(metaCommand{Op: "add_node", Node: &info})); err != nil {
		return err
	}
	for _, g := range n.Layout().Groups {
		if _, err := n.do(ctx, Request{Op: opAddVoter, Group: g.ID, Node: &info}); err != nil {
			return fmt.Errorf("adding %s to group %d: %w", info.ID, g.ID, err)
		}
	}
	n.log.Info("node joined", "id", info.ID, "http", info.HTTPAddr, "raft", info.RaftAddr)
	return nil
}

func (n *Node) removeLocal(ctx context.Context, id NodeID) error {
	l := n.Layout()
	if _, ok := l.Node(id); !ok {
		return fmt.Errorf("%w: node %s is not a member", ErrNotFound, id)
	}
	if len(l.Nodes) == 1 {
		return fmt.Errorf("%w: cannot remove the last node", ErrConflict)
	}
	for _, g := range l.Groups {
		if _, err := n.do(ctx, Request{Op: opRemoveServer, Group: g.ID, Node: &NodeInfo{ID: id}}); err != nil {
			return fmt.Errorf("removing %s from group %d: %w", id, g.ID, err)
		}
	}
	if _, err := n.meta.apply(ctx, mustJSON(metaCommand{Op: "remove_node", Node: &NodeInfo{ID: id}})); err != nil {
		return err
	}
	if err := n.changeMembership(ctx, n.meta, Request{Op: opRemoveServer, Group: MetaGroup, Node: &NodeInfo{ID: id}}); err != nil {
		return err
	}
	n.log.Info("node removed", "id", id)
	return nil
}

// changeMembership adds or removes a voter of r's group; r must lead it.
func (n *Node) changeMembership(ctx context.Context, r *replica, req Request) error {
	if !r.isLeader() {
		return r.notLeader()
	}
	var f raft.IndexFuture
	if req.Op == opAddVoter {
		f = r.raft.AddVoter(raft.ServerID(req.Node.ID), raft.ServerAddress(req.Node.RaftAddr), 0, enqueueTimeout(ctx))
	} else {
		f = r.raft.RemoveServer(raft.ServerID(req.Node.ID), 0, enqueueTimeout(ctx))
	}
	if err := await(ctx, f); err != nil {
		switch err {
		case raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress:
			return r.notLeader()
		case raft.ErrEnqueueTimeout, raft.ErrCantBootstrap:
			return fmt.Errorf("%w: group %d: %v", ErrUnavailable, r.id, err)
		}
		return fmt.Errorf("%w: group %d membership change: %v", ErrOutcomeUnknown, r.id, err)
	}
	return nil
}

// voters returns the voters of r's group, in configuration order.
func (r *replica) voters() []NodeID {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	var out []NodeID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, NodeID(s.ID))
		}
	}
	return out
}
