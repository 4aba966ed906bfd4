package raftnode

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

func contains(ids []NodeID, id NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// PinLeader makes node the preferred leader of group g (empty node: back
// to the balancer's spread); the group's leader hands over to it once it
// has caught up.
func (n *Node) PinLeader(ctx context.Context, g GroupID, node NodeID) error {
	if g == MetaGroup {
		return fmt.Errorf("%w: the metadata group's leader is not pinned", ErrBadRequest)
	}
	req := Request{Op: opPinLeader, Group: MetaGroup, Target: g}
	if node != "" {
		req.Node = &NodeInfo{ID: node}
	}
	_, err := n.do(ctx, req)
	return err
}

// balanceLoop hands each group this node leads to its preferred leader,
// once that node is healthy and caught up for two checks in a row.
func (n *Node) balanceLoop(ctx context.Context) {
	ready := map[GroupID]int{}
	for sleepCtx(ctx, n.cfg.BalanceInterval) {
		for _, r := range n.localReplicas() {
			if !r.isLeader() {
				delete(ready, r.id)
				continue
			}
			want := n.Layout().leaderPlan()[r.id]
			if want == "" || want == n.cfg.ID || !contains(r.voters(), want) {
				delete(ready, r.id)
				continue
			}
			if !n.caughtUp(ctx, r, want) {
				delete(ready, r.id)
				continue
			}
			ready[r.id]++
			if ready[r.id] < 2 {
				continue
			}
			delete(ready, r.id)
			info, ok := n.Layout().Node(want)
			if !ok {
				continue
			}
			n.log.Info("handing leadership to preferred node", "group", uint32(r.id), "to", want)
			tctx, cancel := context.WithTimeout(ctx, 3*n.cfg.Timing.Election)
			err := await(tctx, r.raft.LeadershipTransferToServer(raft.ServerID(want), raft.ServerAddress(info.RaftAddr)))
			cancel()
			if err != nil {
				n.log.Warn("leadership transfer failed", "group", uint32(r.id), "to", want, "err", err)
			}
		}
	}
}

// caughtUp asks node id whether its replica of r's group follows this
// leader and has applied close to the commit index.
func (n *Node) caughtUp(ctx context.Context, r *replica, id NodeID) bool {
	info, ok := n.Layout().Node(id)
	if !ok {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := n.fwd.status(sctx, info.HTTPAddr)
	if err != nil {
		return false
	}
	commit := r.raft.CommitIndex()
	for _, g := range st.Groups {
		if g.ID == r.id {
			return g.State == raft.Follower.String() && g.Leader == n.cfg.ID && g.AppliedIndex+1000 >= commit
		}
	}
	return false
}
