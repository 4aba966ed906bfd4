package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// placerCluster is the node as the replica placer (package placer) sees
// it.
type placerCluster struct{ n *Node }

func (c placerCluster) Layout() *layout.Layout                          { return c.n.Layout() }
func (c placerCluster) LayoutChanged() <-chan struct{}                  { return c.n.meta.meta.Changed() }
func (c placerCluster) LeadsMeta() bool                                 { return c.n.meta.isLeader() }
func (c placerCluster) Logger() *slog.Logger                            { return c.n.log }
func (c placerCluster) Evict(ctx context.Context, id base.NodeID) error { return c.n.evict(ctx, id) }

func (c placerCluster) LeadsMetaCurrent(ctx context.Context) (bool, error) {
	_, leads, err := c.n.leadMetaCurrent(ctx)
	return leads, err
}

func (c placerCluster) Record(ctx context.Context, cmd layout.Command) error {
	_, err := c.n.meta.apply(ctx, mustJSON(cmd))
	return err
}

func (c placerCluster) Step(ctx context.Context, mv layout.ReplicaMove, abort bool) (bool, string, error) {
	resp, err := c.n.do(ctx, protocol.Request{Op: protocol.OpReplicaStep, Group: mv.Group, Move: &mv, Abort: abort})
	return resp.Done, resp.Progress, err
}

// Reachable reports whether node id answers a status request within a
// second (this node always does).
func (c placerCluster) Reachable(ctx context.Context, id base.NodeID) bool {
	if id == c.n.cfg.ID {
		return true
	}
	_, err := c.n.peerStatus(ctx, id)
	return err == nil
}

func (c placerCluster) ShortAfterRemoval(l *layout.Layout, id base.NodeID) []string {
	return c.n.shortAfterRemoval(l, id)
}

// replicaStep runs the next step of a replica move on the group's
// leader: add the destination as a non-voter, wait until it has caught
// up, promote it, hand leadership off the source if it leads, remove the
// source. With abort, it removes the destination instead (unless the
// source is already gone: then the move can only complete).
func (n *Node) replicaStep(ctx context.Context, r *replica, mv layout.ReplicaMove, abort bool) (protocol.Response, error) {
	resp := protocol.Response{ServedBy: n.cfg.ID}
	if !r.isLeader() {
		return resp, r.notLeader()
	}
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return resp, fmt.Errorf("%w: group %d configuration: %v", base.ErrUnavailable, r.id, err)
	}
	var to, from *raft.Server
	for _, s := range f.Configuration().Servers {
		switch base.NodeID(s.ID) {
		case mv.To:
			to = &s
		case mv.From:
			from = &s
		}
	}
	member := func(op protocol.Op, id base.NodeID, addr string) error {
		return n.changeMembership(ctx, r, protocol.Request{Op: op, Group: r.id, Node: &layout.NodeInfo{ID: id, RaftAddr: addr}})
	}
	handOff := func(avoid base.NodeID) (protocol.Response, error) {
		// This leader is the replica leaving: another voter takes over
		// and runs the next step.
		resp.Progress = "handing leadership over"
		tctx, cancel := context.WithTimeout(ctx, 3*n.cfg.Timing.Election)
		defer cancel()
		target := mv.To
		if avoid == mv.To {
			target = ""
		}
		var fut raft.Future
		if info, ok := n.Layout().Node(target); ok && to != nil && to.Suffrage == raft.Voter {
			fut = r.raft.LeadershipTransferToServer(raft.ServerID(target), raft.ServerAddress(info.RaftAddr))
		} else {
			fut = r.raft.LeadershipTransfer()
		}
		if err := await(tctx, fut); err != nil {
			return resp, fmt.Errorf("%w: group %d: leadership transfer: %v", base.ErrUnavailable, r.id, err)
		}
		return resp, nil
	}
	if abort {
		switch {
		case mv.From != "" && from == nil:
			resp.Done, resp.Progress = true, protocol.StepCompleted
		case to == nil:
			resp.Done, resp.Progress = true, protocol.StepAborted
		case mv.To == n.cfg.ID:
			return handOff(mv.To)
		default:
			resp.Progress = "removing the destination"
			return resp, member(protocol.OpRemoveServer, mv.To, "")
		}
		return resp, nil
	}
	switch {
	case to == nil:
		info, ok := n.Layout().Node(mv.To)
		if !ok {
			return resp, fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, mv.To)
		}
		resp.Progress = "destination added as a non-voter"
		return resp, member(protocol.OpAddNonvoter, mv.To, info.RaftAddr)
	case to.Suffrage != raft.Voter:
		if !n.caughtUp(ctx, r, mv.To) {
			resp.Progress = "destination catching up"
			return resp, nil
		}
		resp.Progress = "destination promoted to voter"
		return resp, member(protocol.OpAddVoter, mv.To, string(to.Address))
	case from != nil && mv.From == n.cfg.ID:
		return handOff(mv.From)
	case from != nil:
		resp.Progress = "source removed"
		return resp, member(protocol.OpRemoveServer, mv.From, "")
	}
	resp.Done, resp.Progress = true, "done"
	return resp, nil
}

// setDraining sets a node's draining state; draining a node that is
// leaving keeps it leaving, undraining cancels a pending removal.
func (n *Node) setDraining(ctx context.Context, id base.NodeID, on bool) error {
	cur, ok := n.Layout().Node(id)
	if !ok {
		return fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, id)
	}
	_, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpNodeState, Node: &layout.NodeInfo{ID: id}, Draining: on, Leaving: on && cur.Leaving}))
	return err
}

// dropStrayReplicas shuts down local replicas of groups this node no
// longer holds (a move took them elsewhere) and moves their files aside.
// A layout replayed after a restart may be old, so the decision is taken
// on a layout at least as new as the metadata leader's commit index.
func (n *Node) dropStrayReplicas(ctx context.Context) {
	if len(n.strayReplicas(n.Layout())) == 0 {
		return
	}
	if err := n.metaCaughtUp(ctx); err != nil {
		n.log.Debug("replicas to drop wait for the layout to catch up", "err", err)
		return
	}
	for _, r := range n.strayReplicas(n.Layout()) {
		n.mu.Lock()
		delete(n.replicas, r.id)
		n.mu.Unlock()
		n.setHint(r.id, "")
		r.shutdown()
		dst := filepath.Join(n.cfg.DataDir, "removed", fmt.Sprintf("%d-%d", r.id, time.Now().UnixNano()))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.Rename(r.dir, dst)
			n.log.Info("replica moved to another node: shut down here", "group", uint32(r.id), "moved_to", dst, "err", err)
		}
	}
}

// strayReplicas are the local replicas of groups in l that this node does
// not hold.
func (n *Node) strayReplicas(l *layout.Layout) []*replica {
	var out []*replica
	for _, r := range n.localReplicas() {
		if g, ok := l.Group(r.id); ok && !l.Holds(g, n.cfg.ID) {
			out = append(out, r)
		}
	}
	return out
}

// metaCaughtUp waits until this node has applied the metadata group up to
// its leader's commit index.
func (n *Node) metaCaughtUp(ctx context.Context) error {
	leader := n.meta.leader()
	if leader == "" {
		return fmt.Errorf("%w: metadata group", base.ErrNoLeader)
	}
	commit := n.meta.raft.CommitIndex()
	if leader != n.cfg.ID {
		info, ok := n.Layout().Node(leader)
		if !ok {
			return fmt.Errorf("%w: metadata leader %s unknown", base.ErrNoLeader, leader)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := peerStatus(n.fwd, sctx, info)
		cancel()
		if err != nil {
			return err
		}
		if st.Meta.State != raft.Leader.String() {
			return fmt.Errorf("%w: %s no longer leads the metadata group", base.ErrNoLeader, leader)
		}
		commit = st.Meta.CommitIndex
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.meta.raft.AppliedIndex() < commit {
		if time.Now().After(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("%w: metadata applied %d of %d", base.ErrUnavailable, n.meta.raft.AppliedIndex(), commit)
		}
	}
	return nil
}

// Cluster reports members, replica placement and the move in progress.
// Leaders of groups this node holds no replica of are asked of the nodes
// that do.
func (n *Node) Cluster(ctx context.Context) api.ClusterInfo {
	l := n.Layout()
	leaders := n.groupLeaders(ctx, l)
	ci := api.ClusterInfo{Replication: l.ReplicasPerGroup(), Move: l.Move, Loads: l.Loads, Restore: l.Restore}
	if l.Initialized {
		ci.Balanced = l.Move == nil && l.NextMove(nil) == nil
		for _, nd := range l.Nodes {
			ci.Balanced = ci.Balanced && !nd.Leaving
		}
	}
	if ms := n.placer.Moving(); ms != nil && l.Move != nil && ms.Move == *l.Move {
		ci.Progress = ms.Progress
		ci.MoveSeconds = math.Round(time.Since(ms.Since).Seconds()*10) / 10
	}
	plan := l.LeaderPlan()
	voters := n.meta.voters()
	for _, nd := range l.Nodes {
		cn := api.ClusterNode{NodeInfo: nd, Voter: slices.Contains(voters, nd.ID), Replicas: []base.GroupID{}, Leads: []base.GroupID{}, Preferred: []base.GroupID{}}
		for _, g := range l.Groups {
			if slices.Contains(g.Replicas, nd.ID) {
				cn.Replicas = append(cn.Replicas, g.ID)
			}
			if leaders[g.ID] == nd.ID {
				cn.Leads = append(cn.Leads, g.ID)
			}
			if plan[g.ID] == nd.ID {
				cn.Preferred = append(cn.Preferred, g.ID)
			}
		}
		ci.Nodes = append(ci.Nodes, cn)
	}
	return ci
}

// groupLeaders returns each group's leader: as the local replica knows
// it, or else as the holders report in their status (asked in parallel,
// briefly).
func (n *Node) groupLeaders(ctx context.Context, l *layout.Layout) map[base.GroupID]base.NodeID {
	out := map[base.GroupID]base.NodeID{}
	ask := map[base.NodeID]bool{}
	for _, g := range l.Groups {
		if r := n.replica(g.ID); r != nil && r.leader() != "" {
			out[g.ID] = r.leader()
			continue
		}
		for _, id := range g.Replicas {
			if id != n.cfg.ID {
				ask[id] = true
			}
		}
	}
	if len(ask) == 0 {
		return out
	}
	type answer struct{ st Status }
	answers := make(chan answer, len(ask))
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for id := range ask {
		info, ok := l.Node(id)
		if !ok {
			answers <- answer{}
			continue
		}
		go func() {
			st, err := peerStatus(n.fwd, sctx, info)
			if err != nil {
				st = Status{}
			}
			answers <- answer{st}
		}()
	}
	for range ask {
		a := <-answers
		for _, gs := range a.st.Groups {
			if _, known := out[gs.ID]; !known && gs.State == raft.Leader.String() {
				out[gs.ID] = a.st.Node
			}
		}
	}
	return out
}
