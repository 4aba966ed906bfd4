package layout

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
)

// Replica placement. Each data group keeps Layout.Replication replicas
// (3 unless set at bootstrap) on distinct nodes. The rule is a pure
// function of the layout, so every metadata leader reaches the same
// decisions:
//
//   - a replica on a node being drained moves to another node;
//   - a group with fewer replicas than the factor gains one;
//   - otherwise a replica moves from the node furthest above its share of
//     all replicas (share proportional to node weight) to the node
//     furthest below it, when that brings both closer to their share.
//
// Replicas move one at a time (Layout.Move): the destination joins the
// group as a non-voter, catches up, is promoted, and only then is the
// source removed, so a planned change never leaves a group with fewer
// voters than it had.

// DefaultReplication is the number of replicas per group unless set at
// bootstrap.
const DefaultReplication = 3

// MaxReplication bounds the replication factor.
const MaxReplication = 7

// MaxNodeWeight bounds a node's capacity weight.
const MaxNodeWeight = 1000

// ReplicaMove is a replica moving between nodes: one wire type, defined
// in package api.
type ReplicaMove = api.ReplicaMove

// ReplicasPerGroup returns the layout's replication factor.
func (l *Layout) ReplicasPerGroup() int {
	if l.Replication > 0 {
		return l.Replication
	}
	return DefaultReplication
}

// ReplicaCounts counts the replicas each member holds.
func (l *Layout) ReplicaCounts() map[base.NodeID]int {
	c := map[base.NodeID]int{}
	for _, n := range l.Nodes {
		c[n.ID] = 0
	}
	for _, g := range l.Groups {
		for _, id := range g.Replicas {
			c[id]++
		}
	}
	return c
}

// Holds reports whether node id holds (or is receiving) a replica of g.
func (l *Layout) Holds(g GroupInfo, id base.NodeID) bool {
	if slices.Contains(g.Replicas, id) {
		return true
	}
	return l.Move != nil && l.Move.Group == g.ID && l.Move.To == id
}

// PlaceTarget is the eligible node not holding g and not in avoid with the
// lowest load after receiving it (replicas per unit of weight); ties go to
// the lower id. Empty when there is none.
func (l *Layout) PlaceTarget(g GroupInfo, counts map[base.NodeID]int, avoid map[base.NodeID]bool) base.NodeID {
	best, bestLoad := base.NodeID(""), math.Inf(1)
	for _, n := range l.Nodes {
		if !n.Eligible() || avoid[n.ID] || l.Holds(g, n.ID) {
			continue
		}
		if load := float64(counts[n.ID]+1) / n.Capacity(); load < bestLoad-1e-9 {
			best, bestLoad = n.ID, load
		}
	}
	return best
}

// ShortGroupsCanMove reports whether every group that removing node id
// would leave with fewer voters than a majority of the replication factor
// has an eligible node lacking it, for the replica to move to first.
func (l *Layout) ShortGroupsCanMove(id base.NodeID) bool {
	need := l.ReplicasPerGroup()/2 + 1
	counts := l.ReplicaCounts()
	for _, g := range l.Groups {
		if slices.Contains(g.Replicas, id) && len(g.Replicas)-1 < need && l.PlaceTarget(g, counts, nil) == "" {
			return false
		}
	}
	return true
}

// CannotMoveOff reports whether none of node id's replicas has an
// Eligible node to move to: a leaving node in that state has moved all it
// can.
func (l *Layout) CannotMoveOff(id base.NodeID) bool {
	counts := l.ReplicaCounts()
	for _, g := range l.Groups {
		if slices.Contains(g.Replicas, id) && l.PlaceTarget(g, counts, nil) != "" {
			return false
		}
	}
	return true
}

// PlaceNewGroup chooses the replicas of a group created by a ring change:
// the least loaded eligible nodes, as many as the replication factor.
func (l *Layout) PlaceNewGroup(id base.GroupID) []base.NodeID {
	counts := l.ReplicaCounts()
	g := GroupInfo{ID: id}
	for len(g.Replicas) < l.ReplicasPerGroup() {
		to := l.PlaceTarget(g, counts, nil)
		if to == "" {
			break
		}
		g.Replicas = append(g.Replicas, to)
		counts[to]++
	}
	sort.Slice(g.Replicas, func(i, j int) bool { return g.Replicas[i] < g.Replicas[j] })
	return g.Replicas
}

// NextMove is the next replica move the placement rule asks for, or nil
// when replicas are where they should be (or a move is in progress). No
// move goes to a node in avoid (nodes the caller cannot reach); the rule
// is otherwise the same, so the moves they would get wait until they are
// back.
func (l *Layout) NextMove(avoid map[base.NodeID]bool) *ReplicaMove {
	if !l.Initialized || l.Move != nil {
		return nil
	}
	counts := l.ReplicaCounts()
	groups := append([]GroupInfo(nil), l.Groups...)
	sort.Slice(groups, func(i, j int) bool { return groups[i].ID < groups[j].ID })
	for _, g := range groups {
		for _, id := range g.Replicas {
			if n, ok := l.Node(id); ok && n.Eligible() {
				continue
			}
			if to := l.PlaceTarget(g, counts, avoid); to != "" {
				return &ReplicaMove{Group: g.ID, From: id, To: to, Reason: "drain"}
			}
		}
	}
	for _, g := range groups {
		if len(g.Replicas) < l.ReplicasPerGroup() && len(g.Bootstrap) == 0 {
			if to := l.PlaceTarget(g, counts, avoid); to != "" {
				return &ReplicaMove{Group: g.ID, To: to, Reason: "replicate"}
			}
		}
	}
	// Balance: the eligible node furthest above its share gives a replica
	// to the one furthest below, if that narrows the gap (a difference of
	// more than one replica, so that moves never oscillate).
	total, weights := 0, 0.0
	for _, n := range l.Nodes {
		if n.Eligible() {
			total += counts[n.ID]
			weights += n.Capacity()
		}
	}
	type dev struct {
		id base.NodeID
		d  float64
	}
	var devs []dev
	for _, n := range l.Nodes {
		if n.Eligible() {
			devs = append(devs, dev{n.ID, float64(counts[n.ID]) - float64(total)*n.Capacity()/weights})
		}
	}
	sort.SliceStable(devs, func(i, j int) bool { return devs[i].d > devs[j].d })
	for _, hi := range devs {
		for j := len(devs) - 1; j >= 0; j-- {
			lo := devs[j]
			if hi.d-lo.d <= 1+1e-9 {
				break
			}
			if avoid[lo.id] {
				continue
			}
			for _, g := range groups {
				if slices.Contains(g.Replicas, hi.id) && !slices.Contains(g.Replicas, lo.id) && len(g.Bootstrap) == 0 {
					return &ReplicaMove{Group: g.ID, From: hi.id, To: lo.id, Reason: "balance"}
				}
			}
		}
	}
	return nil
}

// startReplicaMove applies a replica_move_start command.
func startReplicaMove(next *Layout, mv ReplicaMove) error {
	if next.Move != nil {
		return fmt.Errorf("%w: %s is in progress", base.ErrConflict, next.Move)
	}
	gi := -1
	for i, g := range next.Groups {
		if g.ID == mv.Group {
			gi = i
		}
	}
	if gi < 0 {
		return fmt.Errorf("%w: no group %d", base.ErrNotFound, mv.Group)
	}
	g := next.Groups[gi]
	to, ok := next.Node(mv.To)
	switch {
	case !ok:
		return fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, mv.To)
	case !to.Eligible():
		return fmt.Errorf("%w: node %s is being drained", base.ErrConflict, mv.To)
	case slices.Contains(g.Replicas, mv.To):
		return fmt.Errorf("%w: node %s already holds group %d", base.ErrConflict, mv.To, mv.Group)
	case mv.From != "" && !slices.Contains(g.Replicas, mv.From):
		return fmt.Errorf("%w: node %s holds no replica of group %d", base.ErrConflict, mv.From, mv.Group)
	case len(g.Bootstrap) > 0:
		return fmt.Errorf("%w: group %d is still being created", base.ErrConflict, mv.Group)
	}
	m := mv
	next.Move = &m
	return nil
}

// endReplicaMove applies a replica_move_end command: the destination
// replaces the source in the group's replicas, unless the move was
// aborted.
func endReplicaMove(next *Layout, mv ReplicaMove, aborted bool) error {
	if next.Move == nil || *next.Move != mv {
		return fmt.Errorf("%w: %s is not in progress", base.ErrConflict, mv)
	}
	next.Move = nil
	if aborted {
		return nil
	}
	for i := range next.Groups {
		g := &next.Groups[i]
		if g.ID != mv.Group {
			continue
		}
		reps := []base.NodeID{}
		for _, id := range g.Replicas {
			if id != mv.From {
				reps = append(reps, id)
			}
		}
		g.Replicas = append(reps, mv.To)
		if pinned, ok := next.Leaders[g.ID]; ok && pinned == mv.From {
			delete(next.Leaders, g.ID)
		}
	}
	return nil
}

// setNodeState applies a node_state command: draining (replicas move
// off, the node stays a member) or leaving (drained, then removed).
func setNodeState(next *Layout, id base.NodeID, draining, leaving bool) error {
	i := next.NodeIndex(id)
	if i < 0 {
		return fmt.Errorf("%w: node %s is not a member", base.ErrNotFound, id)
	}
	next.Nodes[i].Draining, next.Nodes[i].Leaving = draining, leaving
	if draining || leaving {
		for g, pinned := range next.Leaders {
			if pinned == id {
				delete(next.Leaders, g)
			}
		}
	}
	return nil
}

// LeaderPlan assigns each group a preferred leader among its replicas,
// by the recorded loads.
func (l *Layout) LeaderPlan() map[base.GroupID]base.NodeID { return l.LeaderPlanWith(l.Loads) }

// LeaderPlanWith assigns each group a preferred leader among its replicas:
// pinned groups to their pin, the rest, heaviest first, to the eligible
// replica with the least load per unit of weight so far. A group's load
// is its write rate plus a base share (half the mean rate, at least 1),
// so that without loads leaderships spread by count (ties rotate with the
// group's rank: with 3 nodes and 3 groups each node leads one). A replica
// on its way out of the group (the source of a move) is passed over.
func (l *Layout) LeaderPlanWith(loads map[base.GroupID]float64) map[base.GroupID]base.NodeID {
	plan := map[base.GroupID]base.NodeID{}
	cost := map[base.NodeID]float64{}
	groups := append([]GroupInfo(nil), l.Groups...)
	sort.Slice(groups, func(i, j int) bool { return groups[i].ID < groups[j].ID })
	total := 0.0
	for _, g := range groups {
		total += loads[g.ID]
	}
	floor := max(1, total/float64(max(len(groups), 1))/2)
	weight := func(g base.GroupID) float64 { return loads[g] + floor }
	rank := map[base.GroupID]int{}
	for i, g := range groups {
		rank[g.ID] = i
		if id, ok := l.Leaders[g.ID]; ok && slices.Contains(g.Replicas, id) {
			plan[g.ID] = id
			cost[id] += weight(g.ID)
		}
	}
	order := append([]GroupInfo(nil), groups...)
	sort.SliceStable(order, func(i, j int) bool { return weight(order[i].ID) > weight(order[j].ID)+1e-9 })
	for _, g := range order {
		if _, ok := plan[g.ID]; ok {
			continue
		}
		cands := append([]base.NodeID(nil), g.Replicas...)
		sort.Slice(cands, func(i, j int) bool { return cands[i] < cands[j] })
		best, bestCost := base.NodeID(""), math.Inf(1)
		for k := range cands {
			id := cands[(rank[g.ID]+k)%len(cands)]
			n, ok := l.Node(id)
			if !ok || !n.Eligible() || (l.Move != nil && l.Move.Group == g.ID && l.Move.From == id) {
				continue
			}
			if c := (cost[id] + weight(g.ID)) / n.Capacity(); c < bestCost-1e-9 {
				best, bestCost = id, c
			}
		}
		if best != "" {
			plan[g.ID] = best
			cost[best] += weight(g.ID)
		}
	}
	return plan
}

// Busiest is the highest write rate per unit of weight a node would lead
// under plan, with the given loads.
func (l *Layout) Busiest(plan map[base.GroupID]base.NodeID, loads map[base.GroupID]float64) float64 {
	per := map[base.NodeID]float64{}
	for g, id := range plan {
		per[id] += loads[g]
	}
	top := 0.0
	for id, v := range per {
		if n, ok := l.Node(id); ok {
			top = max(top, v/n.Capacity())
		}
	}
	return top
}

// LoadsWorthRecording reports whether leaderships spread by fresh loads
// would relieve the busiest node enough (a fifth, and 20 writes/s) to
// record them; small swings do not move leaders around.
func (l *Layout) LoadsWorthRecording(fresh map[base.GroupID]float64) bool {
	cur := l.Busiest(l.LeaderPlan(), fresh)
	next := l.Busiest(l.LeaderPlanWith(fresh), fresh)
	return next < 0.8*cur && cur-next > 20
}
