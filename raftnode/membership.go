package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/transport"
)

// Join adds a node to the cluster: to the metadata group, to the layout,
// then to every data group short of replicas, everywhere as a non-voter
// first, as etcd's learners: each group's leader promotes it once it has
// caught up there (promoteMetaVoters, promoteGroupLearners), so a node
// that joins and dies, or is slow to catch up, never counts in a quorum. The
// placer then moves replicas of other groups onto it. It runs on the
// metadata leader (forwarded there if need be), admits only a node that
// answers at its Raft address as the id it gave, and is idempotent for a
// node already in the cluster with the same addresses.
func (n *Node) Join(ctx context.Context, info layout.NodeInfo) error {
	if info.ID == "" || info.HTTPAddr == "" || info.RaftAddr == "" {
		return fmt.Errorf("%w: join needs id, http_addr and raft_addr", base.ErrBadRequest)
	}
	if len(info.RaftAddr) > 255 {
		return fmt.Errorf("%w: raft_addr too long", base.ErrBadRequest)
	}
	if info.Weight < 0 || info.Weight > layout.MaxNodeWeight {
		return fmt.Errorf("%w: weight %v: want a number above 0 and at most %d", base.ErrBadRequest, info.Weight, layout.MaxNodeWeight)
	}
	info.Draining, info.Leaving = false, false
	_, err := n.do(ctx, protocol.Request{Op: protocol.OpJoin, Group: base.MetaGroup, Node: &info})
	return err
}

// Removal is what RemoveNode started.
type Removal struct {
	Node base.NodeID `json:"node"`
	// Draining: the node's replicas are moving to other nodes first; the
	// node leaves once it holds none. Otherwise it was removed at once
	// (no other node could take its replicas, or it held none).
	Draining bool `json:"draining"`
	Replicas int  `json:"replicas"`
}

// RemoveOptions qualify RemoveNode.
type RemoveOptions struct {
	// Force removes the node at once even when that leaves a group with
	// fewer voters than a majority of the replication factor.
	Force bool
}

// RemoveNode removes a node from the cluster. When other nodes can take
// its replicas, they move there first and the node leaves once drained
// (Removal.Draining); otherwise it is removed from every group at once,
// unless that would leave a group (the metadata group included) with
// fewer voters than a majority of the replication factor: that is refused
// with ErrConflict naming the groups, unless o.Force.
func (n *Node) RemoveNode(ctx context.Context, id base.NodeID, o RemoveOptions) (Removal, error) {
	if id == "" {
		return Removal{}, fmt.Errorf("%w: empty node id", base.ErrBadRequest)
	}
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpRemoveNode, Group: base.MetaGroup, Node: &layout.NodeInfo{ID: id}, Force: o.Force})
	out := Removal{Node: id, Draining: resp.Count > 0, Replicas: resp.Count}
	return out, err
}

// DrainNode moves every replica off a node (on) and keeps new ones away
// from it, or lets it hold replicas again (off). The node stays a member.
func (n *Node) DrainNode(ctx context.Context, id base.NodeID, on bool) error {
	if id == "" {
		return fmt.Errorf("%w: empty node id", base.ErrBadRequest)
	}
	_, err := n.do(ctx, protocol.Request{Op: protocol.OpNodeState, Group: base.MetaGroup, Node: &layout.NodeInfo{ID: id, Draining: on}})
	return err
}

func (n *Node) joinLocal(ctx context.Context, info layout.NodeInfo) error {
	l := n.Layout()
	if !l.Initialized {
		return fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	if cur, ok := l.Node(info.ID); ok {
		if cur.RaftAddr != info.RaftAddr || cur.HTTPAddr != info.HTTPAddr {
			return fmt.Errorf("%w: node %s is already a member at %s/%s; remove it first", base.ErrConflict, info.ID, cur.HTTPAddr, cur.RaftAddr)
		}
		if cur.Leaving {
			return fmt.Errorf("%w: node %s is leaving the cluster; wait until it has left", base.ErrConflict, info.ID)
		}
	} else if len(l.Nodes) >= MaxNodes {
		return fmt.Errorf("%w: %d nodes already", base.ErrClusterFull, len(l.Nodes))
	} else if err := n.probeJoiner(ctx, info); err != nil {
		return err
	}
	for _, other := range l.Nodes {
		if other.ID != info.ID && (other.RaftAddr == info.RaftAddr || other.HTTPAddr == info.HTTPAddr) {
			return fmt.Errorf("%w: address already used by node %s", base.ErrConflict, other.ID)
		}
	}
	// A voter already (a join repeated) stays one; AddNonvoter never
	// demotes.
	if err := n.changeMembership(ctx, n.meta, protocol.Request{Op: protocol.OpAddNonvoter, Group: base.MetaGroup, Node: &info}); err != nil {
		return err
	}
	if _, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpAddNode, Node: &info})); err != nil {
		return err
	}
	for _, g := range n.Layout().Groups {
		if !slices.Contains(g.Replicas, info.ID) {
			continue
		}
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpAddNonvoter, Group: g.ID, Node: &info}); err != nil {
			return fmt.Errorf("adding %s to group %d: %w", info.ID, g.ID, err)
		}
	}
	n.log.Info("node joined", "id", info.ID, "http", info.HTTPAddr, "raft", info.RaftAddr, "weight", info.Capacity())
	return nil
}

// PeerStatusPath is the internal endpoint where a node tells, on its Raft
// port, who it is (its status document).
const PeerStatusPath = "/v1/internal/status"

// probeJoiner asks a node that wants to join, on the Raft address it
// gave, who it is: a member that never answers would count in the
// metadata group's quorum, and an address that another node answers at
// would route its traffic there.
func (n *Node) probeJoiner(ctx context.Context, info layout.NodeInfo) error {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, protocol.PeerURL(info.RaftAddr, PeerStatusPath), nil)
	if err != nil {
		return fmt.Errorf("%w: raft_addr %q: %v", base.ErrBadRequest, info.RaftAddr, err)
	}
	body := &limitedBuffer{limit: 16 << 20}
	if err := n.fwd.Stream(req, body); err != nil {
		var te *transport.PeerTLSError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("%w: node %s at raft_addr %s fails the peer TLS handshake (%v): every node of this cluster runs with --peer-cert, --peer-key and --peer-ca, its certificate signed by the cluster's peer CA",
				base.ErrConflict, info.ID, info.RaftAddr, te.Err)
		case errors.Is(err, base.ErrConflict):
			return fmt.Errorf("%w: node %s at raft_addr %s refuses this cluster: %v", base.ErrConflict, info.ID, info.RaftAddr, err)
		}
		return fmt.Errorf("%w: node %s does not answer at raft_addr %s (%v); start it there, then join", base.ErrUnavailable, info.ID, info.RaftAddr, err)
	}
	var st struct {
		Node base.NodeID `json:"node"`
		ACL  bool        `json:"acl"`
	}
	if err := json.Unmarshal(body.Bytes(), &st); err != nil {
		return fmt.Errorf("%w: raft_addr %s answers, but not as a ringkv node: %v", base.ErrConflict, info.RaftAddr, err)
	}
	if st.Node != info.ID {
		return fmt.Errorf("%w: raft_addr %s is node %s's, not %s's", base.ErrConflict, info.RaftAddr, st.Node, info.ID)
	}
	if on := n.ACLEnabled(); st.ACL != on {
		if on {
			return fmt.Errorf("%w: node %s runs without --acl, and this cluster has access control on: start it with --acl", base.ErrConflict, info.ID)
		}
		return fmt.Errorf("%w: node %s runs with --acl, and this cluster was bootstrapped without access control: start it without --acl", base.ErrConflict, info.ID)
	}
	return nil
}

// limitedBuffer is a buffer that refuses to grow past limit.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, fmt.Errorf("answer over %d bytes", b.limit)
	}
	return b.Buffer.Write(p)
}

// removeLocal starts draining a node that others can take the replicas
// of (it returns how many it holds), or removes it at once (see
// RemoveNode for when that is refused).
func (n *Node) removeLocal(ctx context.Context, id base.NodeID, force bool) (int, error) {
	l := n.Layout()
	info, ok := l.Node(id)
	if !ok {
		return 0, fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, id)
	}
	if len(l.Nodes) == 1 {
		return 0, fmt.Errorf("%w: cannot remove the last node", base.ErrConflict)
	}
	held := l.ReplicaCounts()[id]
	others := 0
	for _, o := range l.Nodes {
		if o.ID != id && o.Eligible() {
			others++
		}
	}
	short := n.shortAfterRemoval(l, id)
	// Its replicas move first when the other nodes can keep the factor,
	// or when every group its removal would leave short can take a new
	// replica elsewhere (below the factor, with a node that lacks it).
	movesFirst := others >= l.ReplicasPerGroup() || (len(short) > 0 && !slices.Contains(short, metaGroupName) && l.ShortGroupsCanMove(id))
	if held > 0 && movesFirst {
		if !info.Leaving {
			if _, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpNodeState, Node: &layout.NodeInfo{ID: id}, Draining: true, Leaving: true})); err != nil {
				return 0, err
			}
			n.log.Info("node leaving: its replicas move to other nodes first", "id", id, "replicas", held)
		}
		return held, nil
	}
	if len(short) > 0 && !force {
		need := l.ReplicasPerGroup()/2 + 1
		return 0, fmt.Errorf("%w: removing %s now would leave %s with fewer than %d voters, a majority of the replication factor %d, "+
			"and one more failure would stop them; add a node first so that its replicas can move, or remove it anyway with ?force=true",
			base.ErrConflict, id, strings.Join(short, ", "), need, l.ReplicasPerGroup())
	}
	return 0, n.evict(ctx, id)
}

const metaGroupName = "the metadata group"

// shortAfterRemoval names the groups (and the metadata group) that would
// keep fewer voters than a majority of the replication factor once node id
// is removed from them.
func (n *Node) shortAfterRemoval(l *layout.Layout, id base.NodeID) []string {
	need := l.ReplicasPerGroup()/2 + 1
	var short []string
	for _, g := range l.Groups {
		if slices.Contains(g.Replicas, id) && len(g.Replicas)-1 < need {
			short = append(short, fmt.Sprintf("group %d", g.ID))
		}
	}
	metaVoters := n.meta.voters()
	if slices.Contains(metaVoters, id) && len(metaVoters)-1 < need {
		short = append(short, metaGroupName)
	}
	return short
}

// evict removes a node from every group it holds, from the layout and
// from the metadata group.
func (n *Node) evict(ctx context.Context, id base.NodeID) error {
	if id == n.cfg.ID && len(n.meta.voters()) > 1 {
		// This node leads the metadata group: hand it over, and the next
		// leader removes this node.
		if err := await(ctx, n.meta.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("%w: handing the metadata group over before leaving: %v", base.ErrUnavailable, err)
		}
		return n.meta.notLeader()
	}
	l := n.Layout()
	for _, g := range l.Groups {
		if !l.Holds(g, id) {
			continue
		}
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpRemoveServer, Group: g.ID, Node: &layout.NodeInfo{ID: id}}); err != nil {
			return fmt.Errorf("removing %s from group %d: %w", id, g.ID, err)
		}
	}
	// Out of the metadata group before out of the layout: a leader that
	// dies in between leaves a member (still leaving) that the next one
	// removes again, never a voter the layout has forgotten.
	if err := n.changeMembership(ctx, n.meta, protocol.Request{Op: protocol.OpRemoveServer, Group: base.MetaGroup, Node: &layout.NodeInfo{ID: id}}); err != nil {
		return err
	}
	if _, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpRemoveNode, Node: &layout.NodeInfo{ID: id}})); err != nil {
		return err
	}
	n.log.Info("node removed", "id", id)
	return n.promoteMetaVoters(ctx)
}

// promoteMetaVoters makes caught-up non-voters of the metadata group
// voters while it has fewer than MaxMetaVoters (after a join, or after a
// voter left). A non-voter that is not a member of the layout, is
// leaving, or has not caught up stays one.
func (n *Node) promoteMetaVoters(ctx context.Context) error {
	f := n.meta.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	l := n.Layout()
	voters := len(n.meta.voters())
	for _, s := range f.Configuration().Servers {
		if voters >= MaxMetaVoters {
			return nil
		}
		id := base.NodeID(s.ID)
		if info, ok := l.Node(id); s.Suffrage != raft.Nonvoter || !ok || info.Leaving || !n.metaLearnerCaughtUp(ctx, id) {
			continue
		}
		info := layout.NodeInfo{ID: id, RaftAddr: string(s.Address)}
		if err := n.changeMembership(ctx, n.meta, protocol.Request{Op: protocol.OpAddVoter, Group: base.MetaGroup, Node: &info}); err != nil {
			return err
		}
		n.log.Info("metadata learner promoted to voter", "node", id)
		voters++
	}
	return nil
}

// metaLearnerCaughtUp reports whether node id follows this node in the
// metadata group and its layout reflects the log to within metaLearnerLag
// entries of this node's own. (Raft's applied index would not do: it
// counts entries handed to the state machine, not those applied.)
func (n *Node) metaLearnerCaughtUp(ctx context.Context, id base.NodeID) bool {
	st, err := n.peerStatus(ctx, id)
	if err != nil {
		return false
	}
	_, mine := n.meta.meta.LayoutAt()
	return st.Meta.State == raft.Follower.String() && st.Meta.Leader == n.cfg.ID && st.LayoutIndex > 0 && st.LayoutIndex+metaLearnerLag >= mine
}

// metaLearnerLag is how many entries a metadata learner's layout may be
// behind the leader's and still count as caught up: those of the last
// moments.
const metaLearnerLag = 2

// promoteGroupLearners, on group r's leader, promotes every non-voter the
// layout lists as a replica of the group once it has caught up (a replica
// move promotes its own destination, which the layout does not list yet).
func (n *Node) promoteGroupLearners(ctx context.Context, r *replica) error {
	if !r.isLeader() {
		return nil
	}
	l := n.Layout()
	g, ok := l.Group(r.id)
	if !ok || l.Move != nil && l.Move.Group == r.id {
		return nil
	}
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: group %d configuration: %v", base.ErrUnavailable, r.id, err)
	}
	for _, s := range f.Configuration().Servers {
		id := base.NodeID(s.ID)
		if s.Suffrage != raft.Nonvoter || !slices.Contains(g.Replicas, id) || !n.caughtUp(ctx, r, id) {
			continue
		}
		info := layout.NodeInfo{ID: id, RaftAddr: string(s.Address)}
		if err := n.changeMembership(ctx, r, protocol.Request{Op: protocol.OpAddVoter, Group: r.id, Node: &info}); err != nil {
			return err
		}
		n.log.Info("learner promoted to voter", "group", uint32(r.id), "node", id)
	}
	return nil
}

// changeMembership adds or removes a voter of r's group; r must lead it.
func (n *Node) changeMembership(ctx context.Context, r *replica, req protocol.Request) error {
	if !r.isLeader() {
		return r.notLeader()
	}
	var f raft.IndexFuture
	switch req.Op {
	case protocol.OpAddVoter:
		f = r.raft.AddVoter(raft.ServerID(req.Node.ID), raft.ServerAddress(req.Node.RaftAddr), 0, enqueueTimeout(ctx))
	case protocol.OpAddNonvoter:
		f = r.raft.AddNonvoter(raft.ServerID(req.Node.ID), raft.ServerAddress(req.Node.RaftAddr), 0, enqueueTimeout(ctx))
	default:
		f = r.raft.RemoveServer(raft.ServerID(req.Node.ID), 0, enqueueTimeout(ctx))
	}
	if err := await(ctx, f); err != nil {
		switch err {
		case raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress:
			return r.notLeader()
		case raft.ErrEnqueueTimeout, raft.ErrCantBootstrap:
			return fmt.Errorf("%w: group %d: %v", base.ErrUnavailable, r.id, err)
		}
		return fmt.Errorf("%w: group %d membership change: %v", base.ErrOutcomeUnknown, r.id, err)
	}
	// Raft snapshots only once the state machine has applied an entry
	// past the latest configuration, and a configuration entry does not
	// count: a barrier does. Without it a group whose last entry is a
	// membership change (a promoted learner) could not snapshot until
	// its next write.
	_ = await(ctx, r.raft.Barrier(enqueueTimeout(ctx)))
	return nil
}

// voters returns the voters of r's group, in configuration order.
func (r *replica) voters() []base.NodeID {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	var out []base.NodeID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, base.NodeID(s.ID))
		}
	}
	return out
}

// nonvoters returns the non-voting members of r's group.
func (r *replica) nonvoters() []base.NodeID {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil
	}
	var out []base.NodeID
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			out = append(out, base.NodeID(s.ID))
		}
	}
	return out
}
