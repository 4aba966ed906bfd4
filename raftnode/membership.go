package raftnode

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
)

// Join adds a node to the cluster: to the metadata group, to the layout,
// then as a voter of every data group short of replicas. The placer then
// moves replicas of other groups onto it. It runs on the metadata leader
// (forwarded there if need be) and is idempotent for a node already in the
// cluster with the same addresses.
func (n *Node) Join(ctx context.Context, info NodeInfo) error {
	if info.ID == "" || info.HTTPAddr == "" || info.RaftAddr == "" {
		return fmt.Errorf("%w: join needs id, http_addr and raft_addr", ErrBadRequest)
	}
	if len(info.RaftAddr) > 255 {
		return fmt.Errorf("%w: raft_addr too long", ErrBadRequest)
	}
	if info.Weight < 0 || info.Weight > MaxNodeWeight {
		return fmt.Errorf("%w: weight %v: want a number above 0 and at most %d", ErrBadRequest, info.Weight, MaxNodeWeight)
	}
	info.Draining, info.Leaving = false, false
	_, err := n.do(ctx, Request{Op: opJoin, Group: MetaGroup, Node: &info})
	return err
}

// Removal is what RemoveNode started.
type Removal struct {
	Node NodeID `json:"node"`
	// Draining: the node's replicas are moving to other nodes first; the
	// node leaves once it holds none. Otherwise it was removed at once
	// (no other node could take its replicas, or it held none).
	Draining bool `json:"draining"`
	Replicas int  `json:"replicas"`
}

// RemoveNode removes a node from the cluster. When other nodes can take
// its replicas, they move there first and the node leaves once drained
// (Removal.Draining); otherwise it is removed from every group at once.
func (n *Node) RemoveNode(ctx context.Context, id NodeID) (Removal, error) {
	if id == "" {
		return Removal{}, fmt.Errorf("%w: empty node id", ErrBadRequest)
	}
	resp, err := n.do(ctx, Request{Op: opRemoveNode, Group: MetaGroup, Node: &NodeInfo{ID: id}})
	out := Removal{Node: id, Draining: resp.Count > 0, Replicas: resp.Count}
	return out, err
}

// DrainNode moves every replica off a node (on) and keeps new ones away
// from it, or lets it hold replicas again (off). The node stays a member.
func (n *Node) DrainNode(ctx context.Context, id NodeID, on bool) error {
	if id == "" {
		return fmt.Errorf("%w: empty node id", ErrBadRequest)
	}
	_, err := n.do(ctx, Request{Op: opNodeState, Group: MetaGroup, Node: &NodeInfo{ID: id, Draining: on}})
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
		if cur.Leaving {
			return fmt.Errorf("%w: node %s is leaving the cluster; wait until it has left", ErrConflict, info.ID)
		}
	} else if len(l.Nodes) >= MaxNodes {
		return fmt.Errorf("%w: %d nodes already", ErrClusterFull, len(l.Nodes))
	}
	for _, other := range l.Nodes {
		if other.ID != info.ID && (other.RaftAddr == info.RaftAddr || other.HTTPAddr == info.HTTPAddr) {
			return fmt.Errorf("%w: address already used by node %s", ErrConflict, other.ID)
		}
	}
	op := opAddVoter
	if !contains(n.meta.voters(), info.ID) && len(n.meta.voters()) >= MaxMetaVoters {
		op = opAddNonvoter
	}
	if err := n.changeMembership(ctx, n.meta, Request{Op: op, Group: MetaGroup, Node: &info}); err != nil {
		return err
	}
	if _, err := n.meta.apply(ctx, mustJSON(metaCommand{Op: "add_node", Node: &info})); err != nil {
		return err
	}
	for _, g := range n.Layout().Groups {
		if !contains(g.Replicas, info.ID) {
			continue
		}
		if _, err := n.do(ctx, Request{Op: opAddVoter, Group: g.ID, Node: &info}); err != nil {
			return fmt.Errorf("adding %s to group %d: %w", info.ID, g.ID, err)
		}
	}
	n.log.Info("node joined", "id", info.ID, "http", info.HTTPAddr, "raft", info.RaftAddr, "weight", info.weight())
	return nil
}

// removeLocal starts draining a node that others can take the replicas
// of (it returns how many it holds), or removes it at once.
func (n *Node) removeLocal(ctx context.Context, id NodeID) (int, error) {
	l := n.Layout()
	info, ok := l.Node(id)
	if !ok {
		return 0, fmt.Errorf("%w: node %s is not a member", ErrNotFound, id)
	}
	if len(l.Nodes) == 1 {
		return 0, fmt.Errorf("%w: cannot remove the last node", ErrConflict)
	}
	held := l.replicaCounts()[id]
	others := 0
	for _, o := range l.Nodes {
		if o.ID != id && o.eligible() {
			others++
		}
	}
	if held > 0 && others >= l.replication() {
		if !info.Leaving {
			if _, err := n.meta.apply(ctx, mustJSON(metaCommand{Op: "node_state", Node: &NodeInfo{ID: id}, Draining: true, Leaving: true})); err != nil {
				return 0, err
			}
			n.log.Info("node leaving: its replicas move to other nodes first", "id", id, "replicas", held)
		}
		return held, nil
	}
	return 0, n.evict(ctx, id)
}

// evict removes a node from every group it holds, from the layout and
// from the metadata group.
func (n *Node) evict(ctx context.Context, id NodeID) error {
	if id == n.cfg.ID && len(n.meta.voters()) > 1 {
		// This node leads the metadata group: hand it over, and the next
		// leader removes this node.
		if err := await(ctx, n.meta.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("%w: handing the metadata group over before leaving: %v", ErrUnavailable, err)
		}
		return n.meta.notLeader()
	}
	l := n.Layout()
	for _, g := range l.Groups {
		if !l.holds(g, id) {
			continue
		}
		if _, err := n.do(ctx, Request{Op: opRemoveServer, Group: g.ID, Node: &NodeInfo{ID: id}}); err != nil {
			return fmt.Errorf("removing %s from group %d: %w", id, g.ID, err)
		}
	}
	// Out of the metadata group before out of the layout: a leader that
	// dies in between leaves a member (still leaving) that the next one
	// removes again, never a voter the layout has forgotten.
	if err := n.changeMembership(ctx, n.meta, Request{Op: opRemoveServer, Group: MetaGroup, Node: &NodeInfo{ID: id}}); err != nil {
		return err
	}
	if _, err := n.meta.apply(ctx, mustJSON(metaCommand{Op: "remove_node", Node: &NodeInfo{ID: id}})); err != nil {
		return err
	}
	n.log.Info("node removed", "id", id)
	return n.promoteMetaVoter(ctx)
}

// promoteMetaVoter makes a non-voter of the metadata group a voter while
// it has fewer than MaxMetaVoters (after a voter left).
func (n *Node) promoteMetaVoter(ctx context.Context) error {
	f := n.meta.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	voters := len(n.meta.voters())
	for _, s := range f.Configuration().Servers {
		if voters >= MaxMetaVoters {
			return nil
		}
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		info := NodeInfo{ID: NodeID(s.ID), RaftAddr: string(s.Address)}
		if err := n.changeMembership(ctx, n.meta, Request{Op: opAddVoter, Group: MetaGroup, Node: &info}); err != nil {
			return err
		}
		voters++
	}
	return nil
}

// changeMembership adds or removes a voter of r's group; r must lead it.
func (n *Node) changeMembership(ctx context.Context, r *replica, req Request) error {
	if !r.isLeader() {
		return r.notLeader()
	}
	var f raft.IndexFuture
	switch req.Op {
	case opAddVoter:
		f = r.raft.AddVoter(raft.ServerID(req.Node.ID), raft.ServerAddress(req.Node.RaftAddr), 0, enqueueTimeout(ctx))
	case opAddNonvoter:
		f = r.raft.AddNonvoter(raft.ServerID(req.Node.ID), raft.ServerAddress(req.Node.RaftAddr), 0, enqueueTimeout(ctx))
	default:
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

// nonvoters returns the non-voting members of r's group.
func (r *replica) nonvoters() []NodeID {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	var out []NodeID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			out = append(out, NodeID(s.ID))
		}
	}
	return out
}
