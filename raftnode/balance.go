package raftnode

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// PinLeader makes node the preferred leader of group g (empty node: back
// to the balancer's spread); the group's leader hands over to it once it
// has caught up.
func (n *Node) PinLeader(ctx context.Context, g base.GroupID, node base.NodeID) error {
	if g == base.MetaGroup {
		return fmt.Errorf("%w: the metadata group's leader is not pinned", base.ErrBadRequest)
	}
	req := protocol.Request{Op: protocol.OpPinLeader, Group: base.MetaGroup, Target: g}
	if node != "" {
		req.Node = &layout.NodeInfo{ID: node}
	}
	_, err := n.do(ctx, req)
	return err
}

// balanceLoop hands each group this node leads to its preferred leader,
// once that node is healthy and caught up for two checks in a row.
func (n *Node) balanceLoop(ctx context.Context) {
	ready := map[base.GroupID]int{}
	last, tick := time.Now(), 0
	for sleepCtx(ctx, n.cfg.BalanceInterval) {
		now := time.Now()
		n.measureWrites(now.Sub(last))
		last = now
		if tick++; tick%5 == 0 && n.meta.isLeader() {
			n.recordLoads(ctx)
		}
		for _, r := range n.localReplicas() {
			if !r.isLeader() {
				delete(ready, r.id)
				continue
			}
			want := n.Layout().LeaderPlan()[r.id]
			if want == "" || want == n.cfg.ID || !slices.Contains(r.voters(), want) {
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
// leader and has applied to within catchUpLag entries of the commit index
// as it stood when the question was sent. A replica that has applied
// nothing has not caught up, however short the log: promoted, it would
// count in the quorum while it fetches the whole state.
//
// The commit index is read before the round trip, not after it: under a
// steady write load the entries committed while the question travels
// would otherwise count as lag, and on a loaded machine a replica that
// keeps pace could stay "catching up" for as long as the load lasts.
func (n *Node) caughtUp(ctx context.Context, r *replica, id base.NodeID) bool {
	commit := r.raft.CommitIndex()
	st, err := n.peerStatus(ctx, id)
	if err != nil {
		return false
	}
	for _, g := range st.Groups {
		if g.ID == r.id {
			return g.State == raft.Follower.String() && g.Leader == n.cfg.ID && g.AppliedIndex > 0 && g.AppliedIndex+catchUpLag >= commit
		}
	}
	return false
}

// catchUpLag is how far behind the commit index a replica's applied index
// may be and count as caught up: the entries of the last moments under
// load.
const catchUpLag = 64

// measureWrites updates each local replica's write rate: a moving average
// over the last few intervals of the writes it took as leader.
func (n *Node) measureWrites(dt time.Duration) {
	if dt <= 0 {
		return
	}
	for _, r := range n.localReplicas() {
		w := r.writes.Swap(0)
		rate := float64(w) / dt.Seconds()
		old := math.Float64frombits(r.writeRate.Load())
		r.writeRate.Store(math.Float64bits(0.5*old + 0.5*rate))
	}
}

// recordLoads, on the metadata leader, gathers each group's write rate
// from its leader and records the rates when spreading leaderships by
// them would relieve the busiest node markedly; every leader then hands
// groups over as the new plan says.
func (n *Node) recordLoads(ctx context.Context) {
	l := n.Layout()
	fresh := map[base.GroupID]float64{}
	for _, nd := range l.Nodes {
		var st Status
		if nd.ID == n.cfg.ID {
			st = n.Status()
		} else {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			var err error
			st, err = peerStatus(n.fwd, sctx, nd)
			cancel()
			if err != nil {
				continue
			}
		}
		for _, gs := range st.Groups {
			if gs.State == raft.Leader.String() && gs.WritesPerSec > 0 {
				fresh[gs.ID] = math.Round(gs.WritesPerSec)
			}
		}
	}
	if !l.LoadsWorthRecording(fresh) {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.meta.apply(actx, mustJSON(layout.Command{Op: layout.OpLoads, Loads: fresh})); err != nil {
		n.log.Warn("recording group loads", "err", err)
		return
	}
	n.log.Info("leaderships spread by write load", "loads", fresh)
}
