package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
	"github.com/ringkv/ringkv/verify"
)

// holdFirstNonvoterStep is an OnReplicaMove hook, shared by all nodes,
// that holds the first move to reach its non-voter step: it sends the move
// on held, then waits until release is closed (never, if nil) or its node
// stops.
func holdFirstNonvoterStep(held chan<- layout.ReplicaMove, release <-chan struct{}) func(context.Context, layout.ReplicaMove, string) {
	var once sync.Once
	return func(ctx context.Context, mv layout.ReplicaMove, progress string) {
		if !strings.Contains(progress, "non-voter") {
			return
		}
		hold := false
		once.Do(func() { hold = true })
		if !hold {
			return
		}
		held <- mv
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
}

// checkKeys reads every key's last acknowledged value through each live
// member (linearizable), skipping keys whose last write has an unknown
// outcome.
func checkKeys(t *testing.T, c *raftnodetest.Cluster, want map[string]string, unsure map[string]bool) {
	t.Helper()
	for _, m := range c.Members {
		if m.Node == nil {
			continue
		}
		for k, v := range want {
			if unsure[k] {
				continue
			}
			res, err := m.Node.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
			if err != nil || string(res.Value) != v {
				t.Fatalf("%s: %s = %q (%v), want %q", m.ID, k, res.Value, err, v)
			}
		}
	}
}

// verifyAll checks that every group's replicas hold the same data.
func verifyAll(t *testing.T, n *raftnode.Node) {
	t.Helper()
	vs, err := n.VerifyAll(raftnodetest.Ctx(t, 30*time.Second), verify.Options{Deep: true, NoRepair: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if !v.Agree || len(v.Replicas) != layout.DefaultReplication {
			t.Fatalf("group %d: replicas %d, agree %v: %+v", v.Group, len(v.Replicas), v.Agree, v)
		}
	}
}

// Growing from 3 to 5 nodes moves replicas onto the new nodes while
// clients write; removing a node moves its replicas off before it leaves.
// Every group keeps three voters throughout the end states, every key
// its last acknowledged value, and every replica agrees.
func TestGrowAndDrainNodes(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 6})
	want := fill(t, c, "k", 300)
	nodes := []*raftnode.Node{c.Members[0].Node, c.Members[1].Node, c.Members[2].Node}
	w := startWriters(t, nodes, 4, 50)

	c.Add(0)
	c.Add(0)
	c.WaitPlaced(90 * time.Second)
	l := c.Members[0].Node.Layout()
	counts := map[base.NodeID]int{}
	for _, g := range l.Groups {
		if len(g.Replicas) != 3 {
			t.Fatalf("group %d replicas %v", g.ID, g.Replicas)
		}
		for _, id := range g.Replicas {
			counts[id]++
		}
	}
	for _, m := range c.Members {
		if counts[m.ID] < 3 || counts[m.ID] > 4 {
			t.Fatalf("replicas per node %v: want 3 or 4 each (18 over 5 nodes)", counts)
		}
	}
	// Each group's Raft configuration is the layout's: three voters, no
	// non-voter left behind.
	for _, g := range l.Groups {
		leader := c.WaitForLeader(g.ID)
		gs := c.GroupStatus(leader, g.ID)
		v := slices.Clone(gs.Voters)
		slices.Sort(v)
		r := slices.Clone(g.Replicas)
		slices.Sort(r)
		if !slices.Equal(v, r) || len(gs.Nonvoters) != 0 {
			t.Fatalf("group %d: voters %v nonvoters %v, layout %v", g.ID, gs.Voters, gs.Nonvoters, g.Replicas)
		}
	}
	// Leaderships spread over the five nodes: at most two each.
	c.Eventually("leaders spread", 30*time.Second, func() error {
		led := map[base.NodeID]int{}
		for _, g := range l.Groups {
			for _, i := range c.Holders(g.ID) {
				if c.GroupStatus(i, g.ID).State == "Leader" {
					led[c.Members[i].ID]++
				}
			}
		}
		for id, n := range led {
			if n > 2 {
				return fmt.Errorf("%s leads %d groups: %v", id, n, led)
			}
		}
		return nil
	})

	// Node 1 bootstrapped the cluster; it leaves, its replicas first.
	rm, err := c.Members[3].Node.RemoveNode(raftnodetest.Ctx(t, 10*time.Second), "node1", raftnode.RemoveOptions{})
	if err != nil || !rm.Draining || rm.Replicas == 0 {
		t.Fatalf("remove node1: %+v, %v", rm, err)
	}
	c.Eventually("node1 left", 90*time.Second, func() error {
		if _, ok := c.Members[3].Node.Layout().Node("node1"); ok {
			return fmt.Errorf("node1 still a member: %+v", c.Members[3].Node.Cluster(context.Background()).Move)
		}
		return nil
	})
	c.Kill(0)
	w.halt()
	c.WaitPlaced(60 * time.Second)
	for k, v := range w.last {
		want[k] = v
	}
	checkKeys(t, c, want, w.unsure)
	c.WaitConverged()
	verifyAll(t, c.Members[1].Node)
	t.Logf("writes during the moves: %d acknowledged keys, %d errors", len(w.last), w.errs)
}

// Draining a node moves its replicas off while it stays a member;
// undraining lets the balancer give it replicas back.
func TestDrainAndUndrain(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 4})
	want := fill(t, c, "d", 100)
	c.Add(0)
	c.WaitPlaced(60 * time.Second)
	n := c.Members[1].Node
	if err := n.DrainNode(raftnodetest.Ctx(t, 10*time.Second), "node3", true); err != nil {
		t.Fatal(err)
	}
	c.WaitPlaced(60 * time.Second)
	for _, g := range n.Layout().Groups {
		if slices.Contains(g.Replicas, "node3") {
			t.Fatalf("group %d still on drained node3: %v", g.ID, g.Replicas)
		}
	}
	if st := c.Members[2].Node.Status(); len(st.Groups) != 0 {
		t.Fatalf("drained node3 still runs %d replicas", len(st.Groups))
	}
	// A drained node still serves clients, forwarding to the leaders.
	checkKeys(t, c, want, nil)
	if err := n.DrainNode(raftnodetest.Ctx(t, 10*time.Second), "node3", false); err != nil {
		t.Fatal(err)
	}
	c.WaitPlaced(60 * time.Second)
	if got := len(c.Members[2].Node.Status().Groups); got != 3 {
		t.Fatalf("undrained node3 runs %d replicas, want 3 (12 over 4 nodes)", got)
	}
	if err := n.DrainNode(raftnodetest.Ctx(t, 10*time.Second), "nodeX", true); err == nil {
		t.Fatal("draining an unknown node succeeded")
	}
	checkKeys(t, c, want, nil)
	c.WaitConverged()
	verifyAll(t, n)
}

// Two hot groups led by one node: the balancer records the groups' write
// rates and hands one of them to another node.
func TestLeadersSpreadByLoad(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 6})
	n := c.Members[0].Node
	c.Eventually("leaders spread by count", 30*time.Second, func() error {
		if l1, l4 := c.WaitForLeader(1), c.WaitForLeader(4); l1 != l4 {
			return fmt.Errorf("groups 1 and 4 led by %d and %d; the count plan puts them together", l1, l4)
		}
		return nil
	})
	// Keys of groups 1 and 4 only.
	var hot [][]byte
	for i := 0; len(hot) < 40; i++ {
		k := []byte(fmt.Sprintf("hot/%d", i))
		if g, _ := n.Layout().Route(k); g == 1 || g == 4 {
			hot = append(hot, k)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n.Put(raftnodetest.Ctx(t, 5*time.Second), hot[i%len(hot)], []byte("v"), raftnode.WriteOptions{})
		}
	}()
	defer func() { close(stop); <-done }()
	c.Eventually("hot groups on different leaders", 60*time.Second, func() error {
		if len(n.Layout().Loads) == 0 {
			return fmt.Errorf("no loads recorded yet")
		}
		if l1, l4 := c.WaitForLeader(1), c.WaitForLeader(4); l1 == l4 {
			return fmt.Errorf("groups 1 and 4 both led by %s", c.Members[l1].ID)
		}
		return nil
	})
	t.Logf("loads recorded: %v", n.Layout().Loads)
}

// The metadata leader moving a replica stops in the middle of the move
// (the destination is a non-voter of the group by then); the next
// metadata leader finds the move recorded and finishes it.
func TestReplicaMoveSurvivesTheMoverStopping(t *testing.T) {
	held := make(chan layout.ReplicaMove, 1)
	hook := holdFirstNonvoterStep(held, nil) // held until the node stops
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 3, Configure: func(cfg *raftnode.Config) {
		cfg.Knobs.OnReplicaMove = hook
	}})
	want := fill(t, c, "m", 100)
	c.Add(0)
	var mv layout.ReplicaMove
	select {
	case mv = <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("no replica move reached its first step")
	}
	mover := -1
	for i, m := range c.Members {
		if m.Node != nil && m.Node.Status().Meta.State == "Leader" {
			mover = i
		}
	}
	if mover < 0 {
		t.Fatal("no metadata leader")
	}
	c.Eventually("the move recorded everywhere", 10*time.Second, func() error {
		if l := c.Members[3].Node.Layout(); l.Move == nil || *l.Move != mv {
			return fmt.Errorf("layout shows move %+v, want %+v recorded", l.Move, mv)
		}
		return nil
	})
	t.Logf("stopping %s while it moves %s", c.Members[mover].ID, mv)
	c.Kill(mover)
	c.Eventually("the move finished by another node", 60*time.Second, func() error {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			l := m.Node.Layout()
			if l.Move != nil && *l.Move == mv {
				return fmt.Errorf("%s: move still in progress", m.ID)
			}
			g, _ := l.Group(mv.Group)
			if !slices.Contains(g.Replicas, mv.To) {
				return fmt.Errorf("%s: group %d replicas %v", m.ID, mv.Group, g.Replicas)
			}
		}
		return nil
	})
	c.Restart(mover)
	c.WaitPlaced(60 * time.Second)
	l := c.Members[3].Node.Layout()
	for _, g := range l.Groups {
		leader := c.WaitForLeader(g.ID)
		if gs := c.GroupStatus(leader, g.ID); len(gs.Voters) != 3 || len(gs.Nonvoters) != 0 {
			t.Fatalf("group %d: voters %v nonvoters %v", g.ID, gs.Voters, gs.Nonvoters)
		}
	}
	checkKeys(t, c, want, nil)
	c.WaitConverged()
	verifyAll(t, c.Members[3].Node)
}

// Leadership hand-overs (the balancer's, a pin's, a replica move's) are
// nearly invisible to clients: linearizable reads and writes running
// throughout wait for the new leader instead of failing; only a write in
// flight at the hand-over may end with an unknown outcome.
func TestLeaderHandOversDoNotFailRequests(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[0].Node
	var key []byte
	for i := 0; key == nil; i++ {
		if g, _ := n.Layout().Route([]byte(fmt.Sprintf("t/%d", i))); g == 1 {
			key = []byte(fmt.Sprintf("t/%d", i))
		}
	}
	mustPut(t, n, string(key), "v")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	ops := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				var err error
				if i%2 == 0 {
					_, err = c.Members[w%3].Node.Get(ctx, key, protocol.Linearizable)
				} else {
					_, _, err = c.Members[w%3].Node.Put(ctx, key, []byte("v"), raftnode.WriteOptions{})
				}
				cancel()
				mu.Lock()
				ops++
				// A write in flight when its leader steps down may or may
				// not commit: that is reported honestly, as an unknown
				// outcome. Anything else is a failure.
				if err != nil && !(i%2 == 1 && errors.Is(err, base.ErrOutcomeUnknown)) {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, to := range []int{1, 2, 0, 1} {
		if err := n.PinLeader(raftnodetest.Ctx(t, 5*time.Second), 1, c.Members[to].ID); err != nil {
			t.Fatal(err)
		}
		c.Eventually("leader moved", 20*time.Second, func() error {
			if l := c.WaitForLeader(1); l != to {
				return fmt.Errorf("leader is %s", c.Members[l].ID)
			}
			return nil
		})
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during hand-overs; first: %v", len(failures), ops, failures[0])
	}
	t.Logf("%d requests across 4 leadership hand-overs, none failed", ops)
}

// A replica move whose destination dies is undone once the destination
// has been silent for the stall timeout, instead of waiting for it for as
// long as it is down; when it is back it gets its replicas after all.
func TestReplicaMoveToADeadNodeIsUndone(t *testing.T) {
	held := make(chan layout.ReplicaMove, 1)
	release := make(chan struct{})
	hook := holdFirstNonvoterStep(held, release)
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 3, Configure: func(cfg *raftnode.Config) {
		cfg.MoveStall = 2 * time.Second
		cfg.Knobs.OnReplicaMove = hook
	}})
	want := fill(t, c, "dead", 100)
	added := c.Add(0)
	var mv layout.ReplicaMove
	select {
	case mv = <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("no replica move reached its first step")
	}
	dest := c.Members[added].ID
	if mv.To != dest {
		t.Fatalf("first move %s, want one onto the new node %s", mv, dest)
	}
	t.Logf("stopping %s, the destination of %s", dest, mv)
	c.Kill(added)
	close(release)
	c.Eventually("the move undone", 60*time.Second, func() error {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			l := m.Node.Layout()
			if l.Move != nil {
				return fmt.Errorf("%s: move %s in progress", m.ID, l.Move)
			}
			for _, g := range l.Groups {
				if slices.Contains(g.Replicas, dest) {
					return fmt.Errorf("%s: group %d replicas %v include the dead node", m.ID, g.ID, g.Replicas)
				}
			}
		}
		leader := c.WaitForLeader(mv.Group)
		gs := c.GroupStatus(leader, mv.Group)
		if len(gs.Voters) != 3 || len(gs.Nonvoters) != 0 || slices.Contains(gs.Voters, dest) {
			return fmt.Errorf("group %d: voters %v nonvoters %v", mv.Group, gs.Voters, gs.Nonvoters)
		}
		return nil
	})
	// Writes go on meanwhile, and the node, once back, gets its share.
	for k, v := range fill(t, c, "dead2", 50) {
		want[k] = v
	}
	c.Restart(added)
	c.WaitPlaced(90 * time.Second)
	held4 := 0
	for _, g := range c.Members[0].Node.Layout().Groups {
		if slices.Contains(g.Replicas, dest) {
			held4++
		}
	}
	if held4 != 2 {
		t.Fatalf("%s back: holds %d replicas, want 2 (9 over 4 nodes)", dest, held4)
	}
	checkKeys(t, c, want, nil)
	c.WaitConverged()
	verifyAll(t, c.Members[0].Node)
}

// A node removed from the cluster while it runs learns so from the
// others: it stops serving, records the removal in its data dir and will
// not start on it again. The members that stay are not misled.
func TestRemovedNodeLearnsItLeft(t *testing.T) {
	learned := make(chan base.NodeID, 4)
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 3, Configure: func(cfg *raftnode.Config) {
		id := cfg.ID
		cfg.OnRemoved = func(peer base.NodeID) { learned <- id }
	}})
	want := fill(t, c, "left", 50)
	gone := c.Add(0)
	c.WaitPlaced(90 * time.Second)
	id := c.Members[gone].ID
	rm, err := c.Members[0].Node.RemoveNode(raftnodetest.Ctx(t, 10*time.Second), id, raftnode.RemoveOptions{})
	if err != nil || !rm.Draining {
		t.Fatalf("remove %s: %+v, %v (want a drain)", id, rm, err)
	}
	select {
	case who := <-learned:
		if who != id {
			t.Fatalf("%s believes it was removed; %s was", who, id)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("%s never learned it was removed (layout on node1: %+v)", id, c.Members[0].Node.Layout().Nodes)
	}
	if ready, why := c.Members[gone].Node.Ready(); ready || !strings.Contains(why, "removed") {
		t.Fatalf("removed node ready=%v (%s)", ready, why)
	}
	dir := c.Members[gone].DataDir
	c.Kill(gone)
	cfg := raftnode.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.HTTPAddr, cfg.RaftAddr = id, dir, "127.0.0.1:1", "127.0.0.1:0"
	if n, err := raftnode.New(cfg); !errors.Is(err, raftnode.ErrRemoved) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("restarting the removed node on its data dir: %v, want ErrRemoved", err)
	}
	for i, m := range c.Members {
		if i != gone && m.Node.Removed() {
			t.Fatalf("%s believes it was removed", m.ID)
		}
	}
	select {
	case who := <-learned:
		t.Fatalf("%s also believes it was removed", who)
	default:
	}
	checkKeys(t, c, want, nil)
}
