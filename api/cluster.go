package api

import (
	"fmt"

	"github.com/ringkv/ringkv/base"
)

// ReplicaMove is a replica being moved between nodes.
type ReplicaMove struct {
	Group base.GroupID `json:"group"`
	// From is the node giving the replica up; empty adds a replica to an
	// under-replicated group.
	From base.NodeID `json:"from,omitempty"`
	To   base.NodeID `json:"to"`
	// Reason: drain, replicate or balance.
	Reason string `json:"reason"`
}

// String says the move in words.
func (m ReplicaMove) String() string {
	from := string(m.From)
	if from == "" {
		from = "(new)"
	}
	return fmt.Sprintf("group %d replica %s -> %s (%s)", m.Group, from, m.To, m.Reason)
}

// RestoreLock is the cluster-wide lock a restore holds from before it
// reads its archive until every group is restored or put back. Node is the
// node running it; it renews the lock (Renewals counts), and the metadata
// leader releases a lock no longer renewed (its node died), lifting the
// restore's fences first.
type RestoreLock struct {
	ID       string      `json:"id"`
	Node     base.NodeID `json:"node"`
	Renewals uint64      `json:"renewals,omitempty"`
}

// NodeInfo is a cluster member as the metadata group records it.
type NodeInfo struct {
	ID       base.NodeID `json:"id"`
	HTTPAddr string      `json:"http_addr"`
	RaftAddr string      `json:"raft_addr"`
	// Weight is the node's capacity relative to others (0 means 1): it
	// receives replicas and leaderships in proportion.
	Weight float64 `json:"weight,omitempty"`
	// Draining: the node's replicas move to other nodes and it receives
	// none; Leaving: once drained it is removed from the cluster.
	Draining bool `json:"draining,omitempty"`
	Leaving  bool `json:"leaving,omitempty"`
}

// Capacity is the node's weight, 1 when unset.
func (n NodeInfo) Capacity() float64 {
	if n.Weight > 0 {
		return n.Weight
	}
	return 1
}

// Eligible reports whether a node may receive replicas and leaderships.
func (n NodeInfo) Eligible() bool { return !n.Draining && !n.Leaving }

// ClusterNode is a member as GET /v1/cluster shows it.
type ClusterNode struct {
	NodeInfo
	Voter    bool           `json:"meta_voter"`
	Replicas []base.GroupID `json:"replicas"`
	// Leads are the groups it leads as the answering node knows;
	// Preferred those the balancer assigns it.
	Leads     []base.GroupID `json:"leads"`
	Preferred []base.GroupID `json:"preferred_leader_of"`
}

// ClusterInfo is the cluster's membership and replica placement (GET
// /v1/cluster).
type ClusterInfo struct {
	Replication int           `json:"replication"`
	Nodes       []ClusterNode `json:"nodes"`
	// Move is the replica move in progress; Progress its last step, as
	// reported by the metadata leader when the answering node is it.
	Move     *ReplicaMove `json:"replica_move,omitempty"`
	Progress string       `json:"move_progress,omitempty"`
	// MoveSeconds is how long the move has run under this leader.
	MoveSeconds float64 `json:"move_seconds,omitempty"`
	// Balanced: no move is in progress or wanted.
	Balanced bool `json:"balanced"`
	// Loads are the groups' write rates the leaderships are spread by
	// (none recorded: by count).
	Loads map[base.GroupID]float64 `json:"loads,omitempty"`
	// Restore is the restore lock, while a restore runs.
	Restore *RestoreLock `json:"restore,omitempty"`
}

// Node returns the member with id, and whether there is one.
func (c ClusterInfo) Node(id base.NodeID) (ClusterNode, bool) {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return ClusterNode{}, false
}

// NodeRemoval answers DELETE /v1/cluster/nodes/{id}: Removed when the node
// left at once; Removing, Draining and Replicas when its replicas move
// first (202).
type NodeRemoval struct {
	Removed  base.NodeID `json:"removed,omitempty"`
	Removing base.NodeID `json:"removing,omitempty"`
	Draining bool        `json:"draining,omitempty"`
	Replicas int         `json:"replicas,omitempty"`
}
