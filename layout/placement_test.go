package layout

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/base"
)

// settle applies the placer's moves to l until it wants none, checking
// that no group ever has fewer replicas than it started a move with, and
// returns the moves made.
func settle(t *testing.T, l *Layout) (*Layout, []ReplicaMove) {
	t.Helper()
	var moves []ReplicaMove
	for {
		mv := l.NextMove(nil)
		if mv == nil {
			return l, moves
		}
		if len(moves) > 200 {
			t.Fatalf("placement does not settle: %v", moves[len(moves)-10:])
		}
		before, _ := l.Group(mv.Group)
		next, err := Apply(l, Command{Op: "replica_move_start", Move: mv})
		if err != nil {
			t.Fatalf("start %s: %v", mv, err)
		}
		if _, err := Apply(next, Command{Op: "replica_move_start", Move: mv}); err == nil {
			t.Fatal("a second move started while one was in progress")
		}
		if l, err = Apply(next, Command{Op: "replica_move_end", Move: mv}); err != nil {
			t.Fatalf("end %s: %v", mv, err)
		}
		after, _ := l.Group(mv.Group)
		if len(after.Replicas) < len(before.Replicas) {
			t.Fatalf("%s left group %d with %v (had %v)", mv, mv.Group, after.Replicas, before.Replicas)
		}
		moves = append(moves, *mv)
	}
}

// checkPlacement asserts every group's replicas are distinct members, as
// many as the factor allows, and every eligible node holds its share of
// replicas to within one (weights respected).
func checkPlacement(t *testing.T, l *Layout) {
	t.Helper()
	eligible, weights := 0, 0.0
	for _, n := range l.Nodes {
		if n.Eligible() {
			eligible++
			weights += n.Capacity()
		}
	}
	want := min(l.ReplicasPerGroup(), eligible)
	total, stuck := 0, false
	for _, g := range l.Groups {
		seen, holders := map[base.NodeID]bool{}, 0
		for _, id := range g.Replicas {
			n, ok := l.Node(id)
			if !ok || seen[id] {
				t.Fatalf("group %d replicas %v: %s is not a distinct member", g.ID, g.Replicas, id)
			}
			seen[id] = true
			if n.Eligible() {
				holders++
			} else {
				// A drain is stuck only when no eligible node could
				// take the replica.
				stuck = true
				if holders := len(g.Replicas) - 1; holders < eligible {
					t.Fatalf("group %d keeps %s on draining node %s though %d eligible nodes exist", g.ID, g.Replicas, id, eligible)
				}
			}
		}
		if holders != want || len(g.Replicas) > l.ReplicasPerGroup() {
			t.Fatalf("group %d has %v, want %d eligible replicas", g.ID, g.Replicas, want)
		}
		total += holders
	}
	if stuck {
		return
	}
	counts := l.ReplicaCounts()
	for _, n := range l.Nodes {
		if !n.Eligible() {
			if counts[n.ID] != 0 {
				t.Fatalf("drained node %s still holds %d replicas", n.ID, counts[n.ID])
			}
			continue
		}
		share := float64(total) * n.Capacity() / weights
		if math.Abs(float64(counts[n.ID])-share) <= 1+1e-9 {
			continue
		}
		// Off its share by more than one: only a node's capacity of one
		// replica per group may excuse it (a heavy node holding every
		// group); no move between it and another node may narrow the gap.
		for _, o := range l.Nodes {
			oshare := float64(total) * o.Capacity() / weights
			d := (float64(counts[n.ID]) - share) - (float64(counts[o.ID]) - oshare)
			if !o.Eligible() || d <= 1+1e-9 {
				continue
			}
			for _, g := range l.Groups {
				if slices.Contains(g.Replicas, n.ID) && !slices.Contains(g.Replicas, o.ID) {
					t.Fatalf("node %s (weight %v) holds %d replicas, share %.2f, and could give group %d to %s: %v",
						n.ID, n.Capacity(), counts[n.ID], share, g.ID, o.ID, counts)
				}
			}
		}
	}
}

func newLayout(t *testing.T, groups int) *Layout {
	t.Helper()
	l, err := Apply(&Layout{}, Command{Op: "init", Node: &NodeInfo{ID: "n1"}, Groups: groups, VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func addNode(t *testing.T, l *Layout, id base.NodeID, w float64) *Layout {
	t.Helper()
	l, err := Apply(l, Command{Op: "add_node", Node: &NodeInfo{ID: id, Weight: w}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPlacementGrowAndDrain(t *testing.T) {
	l := newLayout(t, 6)
	for i := 2; i <= 3; i++ {
		l = addNode(t, l, base.NodeID(fmt.Sprintf("n%d", i)), 0)
	}
	l, moves := settle(t, l)
	if len(moves) != 0 {
		t.Fatalf("3 nodes, every group on each: moves %v", moves)
	}
	// Growing to 5 nodes moves replicas onto the new ones only, and just
	// enough of them: 18 replicas, 3.6 per node.
	l = addNode(t, l, "n4", 0)
	l = addNode(t, l, "n5", 0)
	l, moves = settle(t, l)
	checkPlacement(t, l)
	for _, mv := range moves {
		if mv.To != "n4" && mv.To != "n5" || mv.Reason != "balance" {
			t.Fatalf("growing moved %s", mv)
		}
	}
	if len(moves) != 6 {
		t.Fatalf("growing 3 -> 5 nodes made %d moves, want 6 (3 to each new node): %v", len(moves), moves)
	}
	// Leaderships spread too: 6 groups on 5 nodes, at most 2 each.
	led := map[base.NodeID]int{}
	for g, id := range l.LeaderPlan() {
		gi, _ := l.Group(g)
		if !slices.Contains(gi.Replicas, id) {
			t.Fatalf("group %d prefers %s, not a replica", g, id)
		}
		led[id]++
	}
	for id, c := range led {
		if c > 2 {
			t.Fatalf("node %s would lead %d groups: %v", id, c, led)
		}
	}
	// Draining n2 moves exactly its replicas off it, to the others.
	held := l.ReplicaCounts()["n2"]
	l, err := Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: "n2"}, Draining: true, Leaving: true})
	if err != nil {
		t.Fatal(err)
	}
	l, moves = settle(t, l)
	checkPlacement(t, l)
	drained := 0
	for _, mv := range moves {
		if mv.From == "n2" && mv.Reason == "drain" {
			drained++
		}
	}
	if drained != held {
		t.Fatalf("drain moved %d of n2's %d replicas: %v", drained, held, moves)
	}
	if _, ok := l.LeaderPlan()[1]; !ok {
		t.Fatal("group 1 has no preferred leader after the drain")
	}
	for _, id := range l.LeaderPlan() {
		if id == "n2" {
			t.Fatal("a drained node is preferred as leader")
		}
	}
}

func TestPlacementWeights(t *testing.T) {
	l := newLayout(t, 12)
	l = addNode(t, l, "n2", 0)
	l = addNode(t, l, "n3", 0)
	l = addNode(t, l, "n4", 2)
	l, _ = settle(t, l)
	checkPlacement(t, l)
	c := l.ReplicaCounts()
	// 36 replicas over weights 1+1+1+2: n4 holds 12 (every group), the
	// others 8 each.
	if c["n4"] != 12 || c["n1"] != 8 {
		t.Fatalf("replicas per node %v, want n4 12 and 8 for the others", c)
	}
}

// Random joins, drains, undrains and removals: placement always settles
// into a valid, balanced state.
func TestPlacementRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for round := 0; round < 20; round++ {
		l := newLayout(t, 1+rng.Intn(12))
		next := 2
		for step := 0; step < 15; step++ {
			var err error
			switch op := rng.Intn(4); {
			case op == 0 || len(l.Nodes) < 2:
				w := []float64{0, 1, 2, 0.5}[rng.Intn(4)]
				l = addNode(t, l, base.NodeID(fmt.Sprintf("n%d", next)), w)
				next++
			case op == 1:
				n := l.Nodes[rng.Intn(len(l.Nodes))]
				l, err = Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: n.ID}, Draining: !n.Draining})
			case op == 2:
				// A node that has drained leaves.
				for _, n := range l.Nodes {
					if !n.Eligible() && l.ReplicaCounts()[n.ID] == 0 && len(l.Nodes) > 1 {
						l, err = Apply(l, Command{Op: "remove_node", Node: &NodeInfo{ID: n.ID}})
						break
					}
				}
			default:
				// A node dies and is removed at once.
				n := l.Nodes[rng.Intn(len(l.Nodes))]
				if len(l.Nodes) > 1 {
					l, err = Apply(l, Command{Op: "remove_node", Node: &NodeInfo{ID: n.ID}})
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			eligible := 0
			for _, n := range l.Nodes {
				if n.Eligible() {
					eligible++
				}
			}
			if eligible == 0 {
				l, err = Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: l.Nodes[0].ID}})
				if err != nil {
					t.Fatal(err)
				}
			}
			l, _ = settle(t, l)
			if len(l.Nodes) >= 3 {
				checkPlacement(t, l)
			}
		}
	}
}

func TestReplicaMoveValidation(t *testing.T) {
	l := newLayout(t, 2)
	l = addNode(t, l, "n2", 0)
	l = addNode(t, l, "n3", 0)
	l = addNode(t, l, "n4", 0)
	for _, mv := range []ReplicaMove{
		{Group: 9, From: "n1", To: "n4"}, // no such group
		{Group: 1, From: "n1", To: "n9"}, // no such node
		{Group: 1, From: "n1", To: "n2"}, // already holds it
		{Group: 1, From: "n4", To: "n4"}, // source holds nothing
		{Group: 1, From: "nX", To: "n4"}, // unknown source
	} {
		if _, err := Apply(l, Command{Op: "replica_move_start", Move: &mv}); err == nil {
			t.Errorf("move %s accepted", mv)
		}
	}
	drained, err := Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: "n4"}, Draining: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(drained, Command{Op: "replica_move_start", Move: &ReplicaMove{Group: 1, From: "n1", To: "n4"}}); err == nil {
		t.Error("a move onto a draining node was accepted")
	}
	mv := ReplicaMove{Group: 1, From: "n1", To: "n4", Reason: "balance"}
	started, err := Apply(l, Command{Op: "replica_move_start", Move: &mv})
	if err != nil {
		t.Fatal(err)
	}
	other := mv
	other.To = "n3"
	if _, err := Apply(started, Command{Op: "replica_move_end", Move: &other}); err == nil {
		t.Error("ending a move that is not in progress was accepted")
	}
	aborted, err := Apply(started, Command{Op: "replica_move_end", Move: &mv, Aborted: true})
	if err != nil || aborted.Move != nil {
		t.Fatalf("abort: %v", err)
	}
	if g, _ := aborted.Group(1); slices.Contains(g.Replicas, "n4") || !slices.Contains(g.Replicas, "n1") {
		t.Fatalf("aborted move changed the replicas: %v", g.Replicas)
	}
	// The layout with a move in progress survives a snapshot round trip.
	back, err := Decode(strings.NewReader(string(mustJSON(started))))
	if err != nil || back.Move == nil || *back.Move != mv {
		t.Fatalf("round trip: %+v, %v", back.Move, err)
	}
}

func TestLeaderPlanByLoad(t *testing.T) {
	l := newLayout(t, 6)
	l = addNode(t, l, "n2", 0)
	l = addNode(t, l, "n3", 0)
	byCount := l.LeaderPlan()
	if byCount[1] != byCount[4] {
		t.Fatalf("by count, groups 1 and 4 share a leader (rank 0 and 3 of 6 on 3 nodes): %v", byCount)
	}
	hot := map[base.GroupID]float64{1: 1000, 4: 900, 2: 5}
	if !l.LoadsWorthRecording(hot) {
		t.Fatal("two hot groups on one node: spreading them is not worth recording")
	}
	next, err := Apply(l, Command{Op: "loads", Loads: hot})
	if err != nil {
		t.Fatal(err)
	}
	plan := next.LeaderPlan()
	if plan[1] == plan[4] {
		t.Fatalf("hot groups 1 and 4 both led by %s: %v", plan[1], plan)
	}
	led := map[base.NodeID]int{}
	for _, id := range plan {
		led[id]++
	}
	if len(led) != 3 {
		t.Fatalf("a node leads nothing: %v", plan)
	}
	// Recorded, the same loads are not worth recording again, and small
	// swings do not move leaders.
	if next.LoadsWorthRecording(hot) || next.LoadsWorthRecording(map[base.GroupID]float64{1: 990, 4: 950, 3: 8}) {
		t.Fatal("recording again for no gain")
	}
	if l.LoadsWorthRecording(map[base.GroupID]float64{1: 8, 4: 6}) {
		t.Fatal("a few writes per second move leaders")
	}
	// Loads of unknown groups are not kept; bad rates are refused.
	if k, _ := Apply(l, Command{Op: "loads", Loads: map[base.GroupID]float64{99: 5}}); len(k.Loads) != 0 {
		t.Fatalf("loads of an unknown group kept: %v", k.Loads)
	}
	if _, err := DecodeCommand([]byte(`{"op":"loads","loads":{"1":-3}}`)); err == nil {
		t.Fatal("a negative rate was accepted")
	}
}

// applyMove records mv's start and its end, as the placer does.
func applyMove(t *testing.T, l *Layout, mv *ReplicaMove) *Layout {
	t.Helper()
	next, err := Apply(l, Command{Op: "replica_move_start", Move: mv})
	if err != nil {
		t.Fatalf("start %s: %v", mv, err)
	}
	if next, err = Apply(next, Command{Op: "replica_move_end", Move: mv}); err != nil {
		t.Fatalf("end %s: %v", mv, err)
	}
	return next
}

// Nodes the placer cannot reach get no replica: balance moves go to the
// next node below its share, drains to the next least loaded node, and
// with nowhere else to go no move is made.
func TestPlacementAvoidsSilentNodes(t *testing.T) {
	l := newLayout(t, 6)
	for _, id := range []base.NodeID{"n2", "n3", "n4", "n5"} {
		l = addNode(t, l, id, 0)
	}
	avoid := map[base.NodeID]bool{"n5": true}
	for i := 0; ; i++ {
		mv := l.NextMove(avoid)
		if mv == nil {
			break
		}
		if mv.To == "n5" {
			t.Fatalf("move %s goes to a node to avoid", mv)
		}
		l = applyMove(t, l, mv)
		if i > 100 {
			t.Fatal("placement avoiding n5 does not settle")
		}
	}
	counts := l.ReplicaCounts()
	if counts["n5"] != 0 || counts["n4"] != 4 {
		t.Fatalf("avoiding n5: replicas per node %v, want n4 at its share of 18 over 4 nodes (4) and n5 none", counts)
	}
	// Once n5 answers again, it gets its share.
	l, moves := settle(t, l)
	checkPlacement(t, l)
	if len(moves) == 0 || l.ReplicaCounts()["n5"] < 3 {
		t.Fatalf("n5 back: moves %v, replicas %v", moves, l.ReplicaCounts())
	}
	// Draining n1 while n2..n4 are silent: n5 takes what it can, and
	// nothing goes to the silent nodes.
	l, err := Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: "n1"}, Draining: true})
	if err != nil {
		t.Fatal(err)
	}
	silent := map[base.NodeID]bool{"n2": true, "n3": true, "n4": true}
	for mv := l.NextMove(silent); mv != nil; mv = l.NextMove(silent) {
		if silent[mv.To] || mv.From != "n1" {
			t.Fatalf("drain with n2..n4 silent moved %s", mv)
		}
		l = applyMove(t, l, mv)
	}
	for _, g := range l.Groups {
		if slices.Contains(g.Replicas, "n1") && !slices.Contains(g.Replicas, "n5") {
			t.Fatalf("group %d %v: n1 kept a replica that n5 could take", g.ID, g.Replicas)
		}
	}
}

// A removal that would leave a group short of a majority of the
// replication factor moves that group's replica first when some node
// lacks it, even with fewer nodes than the factor; the replicas left with
// nowhere to go then leave with the node.
func TestRemovalBelowTheFactorMovesFirst(t *testing.T) {
	l := newLayout(t, 3)
	l = addNode(t, l, "n2", 0)
	l = addNode(t, l, "n3", 0)
	// Group 1 lost a replica: on n1 and n2 only.
	l.Groups[0].Replicas = []base.NodeID{"n1", "n2"}
	if !l.ShortGroupsCanMove("n1") {
		t.Fatal("group 1 can move to n3 before n1 leaves, but the rule says it cannot")
	}
	draining, err := Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: "n3"}, Draining: true})
	if err != nil {
		t.Fatal(err)
	}
	if draining.ShortGroupsCanMove("n1") {
		t.Fatal("with n3 draining group 1 has nowhere to go, but the rule says it can move")
	}
	l, err = Apply(l, Command{Op: "node_state", Node: &NodeInfo{ID: "n1"}, Draining: true, Leaving: true})
	if err != nil {
		t.Fatal(err)
	}
	if l.CannotMoveOff("n1") {
		t.Fatal("n1's replica of group 1 can move to n3")
	}
	l, moves := settle(t, l)
	if len(moves) != 1 || moves[0].Group != 1 || moves[0].From != "n1" || moves[0].To != "n3" {
		t.Fatalf("moves %v, want group 1 n1 -> n3 only", moves)
	}
	if !l.CannotMoveOff("n1") {
		t.Fatal("after the move n1 holds only groups every other node holds, yet the rule sees a move")
	}
	for _, g := range l.Groups {
		if n := len(g.Replicas) - 1; slices.Contains(g.Replicas, "n1") && n < 2 {
			t.Fatalf("group %d would keep %d voters without n1", g.ID, n)
		}
	}
}
