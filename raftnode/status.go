package raftnode

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/ring"
)

// GroupStatus is one local replica's view of its group.
type GroupStatus struct {
	ID           base.GroupID  `json:"id"`
	State        string        `json:"state"`
	Leader       base.NodeID   `json:"leader"`
	Term         uint64        `json:"term"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	LastIndex    uint64        `json:"last_index"`
	Voters       []base.NodeID `json:"voters"`
	Nonvoters    []base.NodeID `json:"nonvoters,omitempty"`
	// WritesPerSec is the recent rate of writes this replica took as
	// the group's leader.
	WritesPerSec float64 `json:"writes_per_sec"`
	// ProposalWaves counts the batches of writes this replica handed to
	// raft while it led the group, and ProposalWrites the writes they
	// carried (their ratio is the mean batch). ProposalFlightMs is the
	// recent time a batch took from hand-over until applied, and
	// ProposalLingerMs how long the leader lets the next batch gather
	// after a batch of 4 or more (--proposal-linger, README "A linger
	// that follows the flight").
	ProposalWaves    uint64  `json:"proposal_waves"`
	ProposalWrites   uint64  `json:"proposal_writes"`
	ProposalFlightMs float64 `json:"proposal_flight_ms"`
	ProposalLingerMs float64 `json:"proposal_linger_ms"`
	SnapshotIndex    uint64  `json:"snapshot_index"`
	Keys             uint64  `json:"keys"`
	StateBytes       int64   `json:"state_bytes"`
	// MerkleRoot is the root of the replica's Merkle tree at MerkleIndex
	// (its applied index); equal replicas at one index have equal roots.
	MerkleRoot  string `json:"merkle_root,omitempty"`
	MerkleIndex uint64 `json:"merkle_index,omitempty"`
	// Divergences counts verifications that found this replica differing
	// from its group; Repairs the reinstallations from the leader that
	// followed; LastRepair is the latest outcome.
	Divergences uint64      `json:"divergences"`
	Repairs     uint64      `json:"repairs"`
	LastRepair  *api.Repair `json:"last_repair,omitempty"`
}

// Status is a node's view of itself and its local replicas.
type Status struct {
	Node      base.NodeID       `json:"node"`
	Meta      GroupStatus       `json:"meta"`
	Groups    []GroupStatus     `json:"groups"`
	Members   []layout.NodeInfo `json:"members"`
	ClusterID string            `json:"cluster_id,omitempty"`
	// LayoutIndex is the metadata log index the members and ring shown
	// reflect (0: not known yet).
	LayoutIndex uint64 `json:"layout_index"`
	RingEpoch   uint64 `json:"ring_epoch"`
	Joined      bool   `json:"joined"`
	Replication string `json:"replication,omitempty"`
	// ACL: this node was started with access control on (--acl).
	ACL bool `json:"acl,omitempty"`
	// Protocol is the node-to-node protocol version this node speaks
	// (protocol.Version; absent from releases before versioning).
	Protocol int `json:"protocol,omitempty"`
}

func (r *replica) status() GroupStatus {
	st := GroupStatus{
		ID:          r.id,
		State:       r.raft.State().String(),
		Leader:      r.leader(),
		Term:        r.raft.CurrentTerm(),
		CommitIndex: r.raft.CommitIndex(),
		LastIndex:   r.raft.LastIndex(),
		Voters:      r.voters(),
		Nonvoters:   r.nonvoters(),
	}
	if st.State == raft.Leader.String() {
		st.WritesPerSec = math.Round(math.Float64frombits(r.writeRate.Load())*10) / 10
	}
	if r.prop != nil {
		ps := r.prop.stats()
		st.ProposalWaves, st.ProposalWrites = ps.waves, ps.writes
		st.ProposalFlightMs, st.ProposalLingerMs = millis(ps.flight), millis(ps.linger)
	}
	st.SnapshotIndex, _ = strconv.ParseUint(r.raft.Stats()["last_snapshot_index"], 10, 64)
	if r.st != nil {
		st.AppliedIndex = r.st.AppliedIndex()
		st.Keys = r.st.KeyCount()
		st.StateBytes = r.st.FileSize()
		root := r.st.Root()
		st.MerkleRoot, st.MerkleIndex = hex.EncodeToString(root.Hash[:]), root.Index
		st.Divergences, st.Repairs, st.LastRepair = r.divergences.Load(), r.repairs.Load(), r.lastRepair.Load()
	} else {
		st.AppliedIndex = r.raft.AppliedIndex()
	}
	return st
}

// Status reports this node's replicas.
func (n *Node) Status() Status {
	l, index := n.meta.meta.LayoutAt()
	s := Status{Node: n.cfg.ID, Meta: n.meta.status(), Members: l.Nodes, ClusterID: l.ClusterID, LayoutIndex: index, Joined: n.isJoined(), ACL: n.cfg.ACL, Protocol: n.ProtocolVersion()}
	if rg := l.RingView(); rg != nil {
		s.RingEpoch = rg.Epoch()
	}
	for _, r := range n.localReplicas() {
		s.Groups = append(s.Groups, r.status())
	}
	return s
}

// peerStatus asks member id for its status, waiting at most a second.
func (n *Node) peerStatus(ctx context.Context, id base.NodeID) (Status, error) {
	info, ok := n.Layout().Node(id)
	if !ok {
		return Status{}, fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, id)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return peerStatus(n.fwd, sctx, info)
}

func (n *Node) isJoined() bool {
	select {
	case <-n.joined:
		return true
	default:
		return false
	}
}

// Ready reports whether every local group (and the metadata group) has a
// known leader; the reason names the first that does not.
func (n *Node) Ready() (bool, string) {
	if n.Removed() {
		return false, "removed from the cluster"
	}
	if !n.isJoined() {
		return false, "not joined to a cluster yet"
	}
	if !n.Layout().Initialized {
		return false, "cluster layout not initialised yet"
	}
	if n.meta.leader() == "" {
		return false, "metadata group has no leader"
	}
	l := n.Layout()
	for _, g := range l.Groups {
		if slices.Contains(g.Replicas, n.cfg.ID) && n.replica(g.ID) == nil {
			return false, fmt.Sprintf("replica of group %d not started yet", g.ID)
		}
	}
	for _, r := range n.localReplicas() {
		if r.leader() == "" {
			return false, fmt.Sprintf("group %d has no leader", r.id)
		}
	}
	return true, ""
}

// Ring describes the ring as this node has it.
func (n *Node) Ring() (api.RingInfo, error) {
	l := n.Layout()
	rg := l.RingView()
	if rg == nil {
		return api.RingInfo{}, fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	shares := rg.Shares()
	info := api.RingInfo{Epoch: rg.Epoch(), VNodesPerWeight: rg.VNodes()}
	for _, gs := range rg.State().Groups {
		id := gs.ID
		g, _ := l.Group(id)
		info.Groups = append(info.Groups, api.RingGroup{ID: id, Weight: gs.Weight, VNodes: len(gs.Tokens),
			Share: shares[id], Replicas: g.Replicas, Leader: n.leaderOf(id), Tokens: gs.Tokens})
	}
	sort.Slice(info.Groups, func(i, j int) bool { return info.Groups[i].ID < info.Groups[j].ID })
	if m := l.Migration; m != nil {
		mi := &api.MigrationInfo{Change: m.Change.String(), NextEpoch: m.Next.Epoch}
		for _, t := range m.Transfers {
			var share float64
			for _, r := range t.Ranges {
				share += r.Size() / math.Exp2(64)
			}
			mi.Transfers = append(mi.Transfers, api.TransferInfo{From: t.From, To: t.To, Phase: t.Phase, Ranges: len(t.Ranges),
				Share: share, Keys: t.Keys, Total: t.Total})
			if t.Phase == layout.PhaseDone {
				mi.Done++
			}
		}
		info.Migration = mi
	}
	return info, nil
}

// RingEpoch returns the epoch of the ring this node routes by, 0 before
// the layout is initialised.
func (n *Node) RingEpoch() uint64 {
	if rg := n.Layout().RingView(); rg != nil {
		return rg.Epoch()
	}
	return 0
}

// Lookup returns the group, leader and replicas owning key.
func (n *Node) Lookup(key []byte) (api.Lookup, error) {
	l := n.Layout()
	g, err := l.Route(key)
	if err != nil {
		return api.Lookup{}, err
	}
	gi, _ := l.Group(g)
	var key64 string
	if !utf8.Valid(key) {
		key64 = base64.StdEncoding.EncodeToString(key)
	}
	return api.Lookup{Key: string(key), KeyBase64: key64, Hash: fmt.Sprintf("%016x", ring.Hash(key)), Group: g,
		Leader: n.leaderOf(g), Replicas: gi.Replicas, Epoch: l.RingView().Epoch()}, nil
}

// StateValue maps a raft state name to a number for metrics.
func StateValue(s string) float64 {
	switch s {
	case raft.Leader.String():
		return 3
	case raft.Candidate.String():
		return 2
	case raft.Follower.String():
		return 1
	}
	return 0
}

// millis is d in milliseconds, to a microsecond.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
