package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/verify"
)

// writers overwrite their own keys until stopped, remembering the last
// value acknowledged for each (a write with an unknown outcome makes its
// key uncertain until the next acknowledged one). Every other writer
// writes asynchronously: on a cluster whose leaders stay up, an
// acknowledged async write must not be lost either, moving keys or not.
type writers struct {
	mu     sync.Mutex
	last   map[string]string
	unsure map[string]bool
	errs   int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWriters(t *testing.T, nodes []*raftnode.Node, n, keys int) *writers {
	w := &writers{last: map[string]string{}, unsure: map[string]bool{}, stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-w.stop:
					return
				default:
				}
				k, v := fmt.Sprintf("live/%d/%d", i, seq%keys), fmt.Sprintf("v%d", seq)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _, err := nodes[seq%len(nodes)].Put(ctx, []byte(k), []byte(v), raftnode.WriteOptions{Async: i%2 == 1})
				cancel()
				w.mu.Lock()
				switch {
				case err == nil:
					w.last[k] = v
					delete(w.unsure, k)
				case errors.Is(err, base.ErrOutcomeUnknown):
					w.unsure[k] = true
					w.errs++
				default:
					w.errs++
				}
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *writers) halt() { close(w.stop); w.wg.Wait() }

// fill writes n keys prefix/0000.. through the live members in turn and
// returns them with their values.
func fill(t *testing.T, c *raftnodetest.Cluster, prefix string, n int) map[string]string {
	var live []*raftnode.Node
	for _, m := range c.Members {
		if m.Node != nil {
			live = append(live, m.Node)
		}
	}
	want := map[string]string{}
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("%s/%04d", prefix, i), fmt.Sprintf("value-%d", i)
		mustPut(t, live[i%len(live)], k, v)
		want[k] = v
	}
	return want
}

// waitRingEpoch waits until every live member routes by ring epoch, with
// no change in motion.
func waitRingEpoch(c *raftnodetest.Cluster, epoch uint64) {
	c.Eventually(fmt.Sprintf("ring epoch %d everywhere", epoch), 60*time.Second, func() error {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			if l := m.Node.Layout(); l.Migration != nil || m.Node.RingEpoch() != epoch {
				return fmt.Errorf("%s: epoch %d, a change in motion: %v", m.ID, m.Node.RingEpoch(), l.Migration != nil)
			}
		}
		return nil
	})
}

// Adding a group moves a quarter of the keys into it while clients keep
// writing: afterwards every key reads its last acknowledged value through
// every node, from the group the new ring names, the old groups no longer
// hold the moved keys, and every replica agrees.
func TestAddGroupMovesKeysOnline(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[0].Node
	want := fill(t, c, "old", 400)
	epoch := n.RingEpoch()
	var nodes []*raftnode.Node
	for _, m := range c.Members {
		nodes = append(nodes, m.Node)
	}
	w := startWriters(t, nodes, 4, 25)
	got, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Weight: 1}})
	if err != nil || got.Add == nil || got.Add.Group != 4 {
		t.Fatalf("adding a group without an id: %+v %v, want group 4", got, err)
	}
	if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Remove: 2}); !errors.Is(err, base.ErrConflict) {
		t.Fatalf("a second change while one is in motion: %v, want a conflict", err)
	}
	waitRingEpoch(c, epoch+1)
	w.halt()
	for k, v := range w.last {
		if !w.unsure[k] {
			want[k] = v
		}
	}
	t.Logf("%d writes failed while the keys moved (refused or unknown), %d keys written", w.errs, len(w.last))
	l := n.Layout()
	moved := 0
	for k, v := range want {
		g, _ := l.Route([]byte(k))
		if g == 4 {
			moved++
		}
		for _, m := range c.Members {
			res, err := m.Node.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
			if err != nil || string(res.Value) != v || res.Group != g {
				t.Fatalf("%s through %s: %q from group %d (%v), want %q from group %d", k, m.ID, res.Value, res.Group, err, v, g)
			}
		}
	}
	if moved == 0 || moved > len(want)/2 {
		t.Fatalf("%d of %d keys moved to the new group", moved, len(want))
	}
	// A listing across the groups names every key once, in order.
	kvs, err := n.List(raftnodetest.Ctx(t, 10*time.Second), raftnode.ListOptions{Prefix: []byte("old/"), KeysOnly: true})
	if err != nil || len(kvs) != 400 {
		t.Fatalf("listing old/: %d keys (%v), want 400", len(kvs), err)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("old/%04d", i); string(kv.Key) != want {
			t.Fatalf("listing old/: key %d is %s, want %s", i, kv.Key, want)
		}
	}
	c.WaitConverged()
	var held uint64
	for _, gs := range n.Status().Groups {
		held += gs.Keys
	}
	if held != uint64(len(want)) {
		t.Fatalf("the groups hold %d keys in all, the cluster has %d: moved keys were not dropped", held, len(want))
	}
	vs, err := n.VerifyAll(raftnodetest.Ctx(t, 30*time.Second), verify.Options{Deep: true, NoRepair: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if !v.Agree {
			t.Fatalf("group %d's replicas disagree after the change: %+v", v.Group, v)
		}
	}
}

// Retiring a group hands all its keys to the others and shuts its
// replicas down; raising and lowering a weight moves keys in and out of
// one group. Every key keeps its value throughout.
func TestRemoveGroupAndChangeWeight(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[1].Node
	want := fill(t, c, "k", 300)
	change := func(ch layout.RingChange) {
		t.Helper()
		epoch := n.RingEpoch()
		if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), ch); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
		waitRingEpoch(c, epoch+1)
		for k, v := range want {
			res, err := c.Members[2].Node.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
			if err != nil || string(res.Value) != v {
				t.Fatalf("after %s: %s = %q (%v), want %q", ch, k, res.Value, err, v)
			}
		}
	}
	change(layout.RingChange{Remove: 2})
	c.Eventually("group 2's replicas shut down", 30*time.Second, func() error {
		for _, m := range c.Members {
			for _, gs := range m.Node.Status().Groups {
				if gs.ID == 2 {
					return fmt.Errorf("%s still hosts group 2", m.ID)
				}
			}
		}
		return nil
	})
	if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Group: 2, Weight: 1}}); !errors.Is(err, base.ErrConflict) {
		t.Fatalf("reusing a retired group's id: %v, want a conflict", err)
	}
	change(layout.RingChange{Weight: &layout.GroupWeight{Group: 3, Weight: 3}})
	change(layout.RingChange{Weight: &layout.GroupWeight{Group: 3, Weight: 1}})
	// A restarted node opens the groups it holds, not the retired one,
	// and serves every key.
	c.Kill(0)
	c.Restart(0)
	c.Eventually("node 0 back with groups 1 and 3 only", 30*time.Second, func() error {
		var ids []base.GroupID
		for _, gs := range c.Members[0].Node.Status().Groups {
			ids = append(ids, gs.ID)
		}
		if len(ids) != 2 || ids[0] != 1 || ids[1] != 3 {
			return fmt.Errorf("hosts groups %v", ids)
		}
		if ok, why := c.Members[0].Node.Ready(); !ok {
			return errors.New(why)
		}
		return nil
	})
	for k, v := range want {
		res, err := c.Members[0].Node.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
		if err != nil || string(res.Value) != v {
			t.Fatalf("after a restart: %s = %q (%v), want %q", k, res.Value, err, v)
		}
	}
	c.WaitConverged()
	var held uint64
	for _, gs := range n.Status().Groups {
		held += gs.Keys
	}
	if held != uint64(len(want)) {
		t.Fatalf("the groups hold %d keys in all, want %d", held, len(want))
	}
}

// The node moving the keys (the metadata leader) dies in the middle of a
// ring change: the next metadata leader carries the change on from the
// phase recorded, and no key is lost or left in two groups.
func TestRingChangeSurvivesTheMoverDying(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	want := fill(t, c, "k", 600)
	mover := metaLeader(c)
	other := c.Members[(mover+1)%3].Node
	epoch := other.RingEpoch()
	if _, err := other.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Weight: 2}}); err != nil {
		t.Fatal(err)
	}
	// Kill it once a transfer is under way (copied, fenced or flipped).
	c.Eventually("a transfer under way", 30*time.Second, func() error {
		m := other.Layout().Migration
		if m == nil {
			return nil // already complete: the kill below still tests a restart
		}
		for _, tr := range m.Transfers {
			if tr.Phase != layout.PhaseCopy || tr.Keys > 0 {
				return nil
			}
		}
		return errors.New("no transfer has started")
	})
	if m := other.Layout().Migration; m != nil {
		for _, tr := range m.Transfers {
			t.Logf("at the kill: transfer %d->%d %s, %d keys copied", tr.From, tr.To, tr.Phase, tr.Keys)
		}
	} else {
		t.Log("the change completed before the kill")
	}
	c.Kill(mover)
	waitRingEpoch(c, epoch+1) // without the first mover
	c.Restart(mover)
	waitRingEpoch(c, epoch+1) // the restarted node too
	c.WaitConverged()
	for k, v := range want {
		for _, m := range c.Members {
			res, err := m.Node.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
			if err != nil || string(res.Value) != v {
				t.Fatalf("%s through %s: %q (%v), want %q", k, m.ID, res.Value, err, v)
			}
		}
	}
	var held uint64
	for _, gs := range other.Status().Groups {
		held += gs.Keys
	}
	if held != uint64(len(want)) {
		t.Fatalf("the groups hold %d keys in all, want %d", held, len(want))
	}
}

// metaLeader waits for a metadata leader and returns its index.
func metaLeader(c *raftnodetest.Cluster) int {
	leader := -1
	c.Eventually("a metadata leader", 30*time.Second, func() error {
		for i, m := range c.Members {
			if m.Node != nil && m.Node.Status().Meta.State == "Leader" {
				leader = i
				return nil
			}
		}
		return errors.New("none")
	})
	return leader
}

// holdingCluster starts a cluster whose mover waits, at the phase given
// to hold, until free is called; hold's channel names the source of each
// transfer that reached it.
func holdingCluster(t *testing.T) (c *raftnodetest.Cluster, hold func(phase string) <-chan base.GroupID, free func()) {
	var holdAt atomic.Value
	holdAt.Store("")
	reached := make(chan base.GroupID, 16)
	release := make(chan struct{})
	c = raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) {
		cfg.Knobs.OnTransfer = func(from, to base.GroupID, phase string) {
			if phase == holdAt.Load().(string) {
				select {
				case reached <- from:
				default:
				}
				<-release
			}
		}
	}})
	var once sync.Once
	free = func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before the cluster stops: the mover must not be left waiting
	hold = func(phase string) <-chan base.GroupID { holdAt.Store(phase); return reached }
	return c, hold, free
}

func waitReached(t *testing.T, reached <-chan base.GroupID) base.GroupID {
	t.Helper()
	select {
	case g := <-reached:
		return g
	case <-time.After(30 * time.Second):
		t.Fatal("no transfer reached the phase held")
		return 0
	}
}

// A ring change can be aborted until a transfer flips: the fenced source
// answers for its ranges again, the new group is retired, and no key is
// lost or left behind.
func TestAbortRingChange(t *testing.T) {
	c, hold, free := holdingCluster(t)
	n := c.Members[0].Node
	want := fill(t, c, "k", 300)
	epoch := n.RingEpoch()

	reached := hold(layout.PhaseFenced)
	if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	from := waitReached(t, reached)
	// A key in the fenced ranges: writes to it are held, then refused.
	l := n.Layout()
	next, err := ring.FromState(l.Migration.Next)
	if err != nil {
		t.Fatal(err)
	}
	var fenced string
	for k := range want {
		g, _ := l.RingView().Lookup([]byte(k))
		to, _ := next.Lookup([]byte(k))
		if base.GroupID(g) == from && to == 4 {
			fenced = k
			break
		}
	}
	if fenced == "" {
		t.Fatalf("no key moves from group %d", from)
	}
	if _, _, err := n.Put(raftnodetest.Ctx(t, 500*time.Millisecond), []byte(fenced), []byte("during"), raftnode.WriteOptions{}); !errors.Is(err, base.ErrMoved) {
		t.Fatalf("a write to a fenced key: %v, want ErrMoved", err)
	}
	if err := n.AbortRingChange(raftnodetest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	free()
	waitRingEpoch(c, epoch)
	if l := n.Layout(); len(l.Groups) != 3 || len(l.Retired) != 1 || l.Retired[0] != 4 {
		t.Fatalf("after the abort: groups %v, retired %v", l.Groups, l.Retired)
	}
	mustPut(t, n, fenced, "after")
	want[fenced] = "after"
	c.WaitConverged()
	var held uint64
	for _, gs := range n.Status().Groups {
		if gs.ID == 4 {
			continue // shut down in the background
		}
		held += gs.Keys
	}
	if held != uint64(len(want)) {
		t.Fatalf("the groups hold %d keys, want %d", held, len(want))
	}
	for k, v := range want {
		if got := mustGet(t, c.Members[2].Node, k, protocol.Linearizable); got != v {
			t.Fatalf("%s = %q after the abort, want %q", k, got, v)
		}
	}
	if err := n.AbortRingChange(raftnodetest.Ctx(t, 5*time.Second)); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("aborting with no change in motion: %v", err)
	}
}

// Once a transfer has flipped, its destination may hold writes its source
// never saw: an abort is refused and the change runs to its end.
func TestAbortRefusedOnceATransferFlipped(t *testing.T) {
	c, hold, free := holdingCluster(t)
	n := c.Members[1].Node
	fill(t, c, "k", 100)
	epoch := n.RingEpoch()
	reached := hold(layout.PhaseFlipped)
	if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Remove: 3}); err != nil {
		t.Fatal(err)
	}
	waitReached(t, reached)
	if err := n.AbortRingChange(raftnodetest.Ctx(t, 10*time.Second)); !errors.Is(err, base.ErrConflict) {
		t.Fatalf("aborting after a flip: %v, want a conflict", err)
	}
	free()
	waitRingEpoch(c, epoch+1)
}

// A pinned leader: the group's leadership moves to the chosen node and
// stays there; unpinned, it returns to the balancer's spread.
func TestPinLeader(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[0].Node
	leaderOf := func(g base.GroupID) base.NodeID {
		return c.Members[c.WaitForLeader(g)].ID
	}
	c.Eventually("the balancer's spread", 30*time.Second, func() error {
		seen := map[base.NodeID]bool{}
		for g := base.GroupID(1); g <= 3; g++ {
			seen[leaderOf(g)] = true
		}
		if len(seen) != 3 {
			return fmt.Errorf("leaders on %v", seen)
		}
		return nil
	})
	before := leaderOf(1)
	target := c.Members[0].ID
	if target == before {
		target = c.Members[1].ID
	}
	if err := n.PinLeader(raftnodetest.Ctx(t, 10*time.Second), 1, target); err != nil {
		t.Fatal(err)
	}
	c.Eventually("group 1 led by the pinned node", 30*time.Second, func() error {
		if l := leaderOf(1); l != target {
			return fmt.Errorf("led by %s", l)
		}
		return nil
	})
	// It stays: watched through several balance rounds (500 ms each, a
	// handover needing two), it never moves back.
	since := time.Now()
	c.Eventually("the pin to hold through several balance rounds", 30*time.Second, func() error {
		if l := leaderOf(1); l != target {
			t.Fatalf("the pinned leader moved to %s", l)
		}
		if time.Since(since) < 3*time.Second {
			return errors.New("still watching")
		}
		return nil
	})
	if err := n.PinLeader(raftnodetest.Ctx(t, 5*time.Second), 1, "nobody"); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("pinning to a node without a replica: %v", err)
	}
	if err := n.PinLeader(raftnodetest.Ctx(t, 5*time.Second), 9, target); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("pinning an unknown group: %v", err)
	}
	if err := n.PinLeader(raftnodetest.Ctx(t, 10*time.Second), 1, ""); err != nil {
		t.Fatal(err)
	}
	c.Eventually("group 1 back with the balancer's choice", 30*time.Second, func() error {
		if l := leaderOf(1); l != before {
			return fmt.Errorf("led by %s, the balancer prefers %s", l, before)
		}
		return nil
	})
}

// An asynchronous write is acknowledged at its append, so none may be
// appended after the fence of its range and then refused. A write that
// passed the check for a ring change (there was none yet) is held just
// before its append while a change moving its key starts: the fence must
// wait for it. Were it not to, the fence would apply within the hold, the
// write would be appended after it, acknowledged, and refused: the key
// would be missing afterwards.
func TestAsyncWriteIsNotOvertakenByAFence(t *testing.T) {
	var c *raftnodetest.Cluster
	var key []byte
	reached := make(chan struct{})
	var once sync.Once
	fencedWhileHeld := false
	c = raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) {
		cfg.Knobs.OnAsyncWrite = func(g base.GroupID, k []byte) {
			if string(k) != string(key) {
				return
			}
			hold := false
			once.Do(func() { hold = true })
			if !hold {
				return
			}
			close(reached)
			// Hold until the source has applied a fence (the layout
			// records the transfer as fenced), or for 2 s.
			deadline := time.After(2 * time.Second)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				if m := c.Members[0].Node.Layout().Migration; m != nil {
					for _, tr := range m.Transfers {
						if tr.From == g && tr.Phase != layout.PhaseCopy {
							fencedWhileHeld = true
							return
						}
					}
				}
				select {
				case <-deadline:
					return
				case <-tick.C:
				}
			}
		}
	}})
	n := c.Members[0].Node
	// A key that moves to group 4 when it is added.
	next, err := n.Layout().RingView().AddGroup(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; key == nil; i++ {
		k := []byte(fmt.Sprintf("held/%d", i))
		if g, _ := next.Lookup(k); g == 4 {
			key = k
		}
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := n.Put(raftnodetest.Ctx(t, 20*time.Second), key, []byte("acked"), raftnode.WriteOptions{Async: true})
		done <- err
	}()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the async write never reached its append")
	}
	epoch := n.RingEpoch()
	if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Group: 4, Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("async put: %v", err)
	}
	waitRingEpoch(c, epoch+1)
	if fencedWhileHeld {
		t.Error("the source applied a fence while an async write to its range was between its check and its append")
	}
	res, err := c.Members[1].Node.Get(raftnodetest.Ctx(t, 10*time.Second), key, protocol.Linearizable)
	if err != nil || string(res.Value) != "acked" {
		t.Fatalf("acknowledged async write of %s: %q, %v", key, res.Value, err)
	}
	if res.Group != 4 {
		t.Fatalf("%s read from group %d, want 4", key, res.Group)
	}
}

// A node that becomes the metadata leader before its layout has caught up
// with its log (a restarted node starts from its last snapshot) must not
// carry on a ring change that has finished since: redoing a step such as
// a transfer's drop can delete keys that a later change moved back. Both
// followers' layouts are held while the change is in motion, the leader
// finishes it and is killed; whichever follower takes over must not act
// on the change before its layout has caught up, and then finds it done.
func TestLaggingMetadataLeaderDoesNotRedoAFinishedChange(t *testing.T) {
	var afterKill atomic.Bool
	var redone atomic.Value      // the first transfer step taken after the kill
	acted := make(chan struct{}) // closed when redone is set
	holdCopy := make(chan struct{})
	copying := make(chan struct{}, 1)
	lag := map[base.NodeID]chan struct{}{}
	var lagMu sync.Mutex
	var lagging sync.Map // node id -> true while its layout is held
	c := raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) {
		id := cfg.ID
		lagMu.Lock()
		lag[id] = make(chan struct{})
		release := lag[id]
		lagMu.Unlock()
		cfg.Knobs.OnTransfer = func(from, to base.GroupID, phase string) {
			if afterKill.Load() {
				if redone.CompareAndSwap(nil, fmt.Sprintf("%s: transfer %d->%d at %s", id, from, to, phase)) {
					close(acted)
				}
				return
			}
			if phase == layout.PhaseCopy {
				select {
				case copying <- struct{}{}:
				default:
				}
				<-holdCopy
			}
		}
		cfg.Knobs.OnMetaApply = func(uint64) {
			if _, held := lagging.Load(id); held {
				<-release
			}
		}
	}})
	releaseAll := sync.OnceFunc(func() {
		lagMu.Lock()
		defer lagMu.Unlock()
		for _, ch := range lag {
			close(ch)
		}
	})
	t.Cleanup(releaseAll) // before the cluster stops
	var freeOnce sync.Once
	free := func() { freeOnce.Do(func() { close(holdCopy) }) }
	t.Cleanup(free)

	want := fill(t, c, "k", 200)
	mover := metaLeader(c)
	leader := c.Members[mover].Node
	epoch := leader.RingEpoch()
	change, err := leader.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	added := change.Add.Group
	select {
	case <-copying:
	case <-time.After(30 * time.Second):
		t.Fatal("the mover did not start copying")
	}
	// The followers see the change and host the new group; then their
	// layouts stop there.
	var followers []int
	for i := range c.Members {
		if i != mover {
			followers = append(followers, i)
		}
	}
	c.Eventually("the followers to see the change and host the new group", 30*time.Second, func() error {
		for _, i := range followers {
			n := c.Members[i].Node
			if n.Layout().Migration == nil {
				return fmt.Errorf("%s: no change in motion", c.Members[i].ID)
			}
			found := false
			for _, gs := range n.Status().Groups {
				found = found || gs.ID == added
			}
			if !found {
				return fmt.Errorf("%s: no replica of group %d", c.Members[i].ID, added)
			}
		}
		return nil
	})
	for _, i := range followers {
		lagging.Store(c.Members[i].ID, true)
	}
	free()
	c.Eventually("the change to finish on the leader", 60*time.Second, func() error {
		if l := leader.Layout(); l.Migration != nil || leader.RingEpoch() != epoch+1 {
			return fmt.Errorf("epoch %d, a change in motion: %v", leader.RingEpoch(), l.Migration != nil)
		}
		return nil
	})
	for _, i := range followers {
		if c.Members[i].Node.Layout().Migration == nil {
			t.Fatalf("%s's layout was not held: the change shows finished", c.Members[i].ID)
		}
	}
	afterKill.Store(true)
	c.Kill(mover)
	c.Eventually("a new metadata leader", 30*time.Second, func() error {
		for _, i := range followers {
			if c.Members[i].Node.Status().Meta.State == "Leader" {
				return nil
			}
		}
		return errors.New("none yet")
	})
	// A mover acting on the stale layout does so within a second (it
	// looks again every second); watch three.
	select {
	case <-acted:
		t.Fatalf("the new metadata leader acted on a finished change: %s", redone.Load())
	case <-time.After(3 * time.Second):
	}
	releaseAll()
	for _, i := range followers {
		n := c.Members[i].Node
		c.Eventually(fmt.Sprintf("%s at ring epoch %d", c.Members[i].ID, epoch+1), 60*time.Second, func() error {
			if l := n.Layout(); l.Migration != nil || n.RingEpoch() != epoch+1 {
				return fmt.Errorf("epoch %d, a change in motion: %v", n.RingEpoch(), l.Migration != nil)
			}
			return nil
		})
	}
	if r := redone.Load(); r != nil {
		t.Fatalf("the new metadata leader acted on a finished change: %s", r)
	}
	n := c.Members[followers[0]].Node
	for k, v := range want {
		res, err := n.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(k), protocol.Linearizable)
		if err != nil || string(res.Value) != v {
			t.Fatalf("%s: %q (%v), want %q", k, res.Value, err, v)
		}
	}
}

// During a rolling upgrade the metadata leader may run a release without
// layout_index, which refuses it as an unknown op and says no protocol
// version. Lists through an upgraded node then take that node's layout, as
// the earlier release's lists do, rather than all fail. A versioned
// leader's refusal, whatever it says, still fails them: the version, not
// the error's text, tells an earlier release.
func TestListWhileTheMetadataLeaderIsOfAnEarlierRelease(t *testing.T) {
	var refuse atomic.Value  // the error layout_index is refused with, or nil
	var version atomic.Int32 // the protocol version every node says
	version.Store(protocol.Version)
	c := raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) {
		cfg.Knobs.OnServe = func(op string) error {
			if err, _ := refuse.Load().(error); err != nil && op == "layout_index" {
				return err
			}
			return nil
		}
		cfg.Knobs.ProtocolVersion = func() int { return int(version.Load()) }
	}})
	want := fill(t, c, "k", 100)
	other := c.Members[(metaLeader(c)+1)%len(c.Members)]
	list := func(cons protocol.Consistency) (map[string]string, error) {
		kvs, err := other.Node.List(raftnodetest.Ctx(t, 5*time.Second), raftnode.ListOptions{Consistency: cons})
		got := map[string]string{}
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		return got, err
	}
	unknown := fmt.Errorf("%w: unknown op %q", base.ErrBadRequest, "layout_index")
	refuse.Store(unknown)
	if _, err := list(protocol.Linearizable); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("list while a versioned metadata leader refuses layout_index: %v, want that refusal", err)
	}
	version.Store(protocol.Unversioned)
	for _, cons := range []protocol.Consistency{protocol.Linearizable, protocol.Lease} {
		got, err := list(cons)
		if err != nil {
			t.Fatalf("%s list through %s while the metadata leader is of a release without layout_index: %v", cons, other.ID, err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s list through %s: %d keys, want the %d written", cons, other.ID, len(got), len(want))
		}
	}
	refuse.Store(fmt.Errorf("%w: metadata leader unavailable", base.ErrUnavailable))
	if _, err := list(protocol.Linearizable); !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("list while an earlier metadata leader is unavailable: %v, want that error", err)
	}
}

// A restarted node whose layout lags behind its log (held here: it
// restored a metadata snapshot from before a ring change) lists by the
// current layout or not at all: by its own, it would leave out the group
// the change added, and the keys moved there.
func TestListFromALaggingLayoutIsCompleteOrRefused(t *testing.T) {
	var lagging sync.Map // node id -> true while its layout is held
	release := make(chan struct{})
	c := raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) {
		id := cfg.ID
		cfg.Knobs.OnMetaApply = func(uint64) {
			if _, held := lagging.Load(id); held {
				<-release
			}
		}
	}})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the cluster stops

	want := fill(t, c, "k", 200)
	mover := metaLeader(c)
	leader := c.Members[mover].Node
	li := (mover + 1) % len(c.Members)
	lagger := c.Members[li]
	if _, err := lagger.Node.SnapshotAll(raftnodetest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	epoch := leader.RingEpoch()
	if _, err := leader.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Add: &layout.GroupWeight{Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	waitRingEpoch(c, epoch+1)
	for k, v := range fill(t, c, "n", 50) {
		want[k] = v
	}
	c.Kill(li)
	lagging.Store(lagger.ID, true)
	c.Restart(li)
	if n := lagger.Node; n.RingEpoch() != epoch || len(n.Layout().Groups) != 3 {
		t.Fatalf("%s's layout is not its snapshot's: epoch %d, %d groups", lagger.ID, n.RingEpoch(), len(n.Layout().Groups))
	}
	check := func(kvs []protocol.KV) {
		t.Helper()
		got := map[string]string{}
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("the list from %s has %q = %q, want %q (%d keys, want %d)", lagger.ID, k, got[k], v, len(got), len(want))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("the list from %s has %d keys, want %d", lagger.ID, len(got), len(want))
		}
	}
	for _, cons := range []protocol.Consistency{protocol.Linearizable, protocol.Lease} {
		kvs, err := lagger.Node.List(raftnodetest.Ctx(t, 2*time.Second), raftnode.ListOptions{Consistency: cons})
		if err == nil {
			check(kvs)
		} else if !errors.Is(err, base.ErrUnavailable) {
			t.Fatalf("%s list from the lagging node: %v, want the full list or unavailable", cons, err)
		}
	}
	releaseOnce()
	kvs, err := lagger.Node.List(raftnodetest.Ctx(t, 30*time.Second), raftnode.ListOptions{Consistency: protocol.Linearizable})
	if err != nil {
		t.Fatalf("list once the layout caught up: %v", err)
	}
	check(kvs)
}

// A list that pages through the keys while a ring change retires a group
// under it starts again from the last key it gave, under the new ring:
// every key comes exactly once, in order.
func TestListAcrossARingChange(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[1].Node
	want := fill(t, c, "k", 300)
	defer raftnode.SetListPage(5, 1<<20)()
	epoch := n.RingEpoch()
	var got []string
	err := n.ListEach(raftnodetest.Ctx(t, 60*time.Second), raftnode.ListOptions{Prefix: []byte("k")}, func(kv protocol.KV) error {
		got = append(got, string(kv.Key))
		if len(got) == 40 {
			if _, err := n.ChangeRing(raftnodetest.Ctx(t, 10*time.Second), layout.RingChange{Remove: 2}); err != nil {
				return err
			}
			waitRingEpoch(c, epoch+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("key %d: %q after %q", i, got[i], got[i-1])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d keys across the ring change, want %d", len(got), len(want))
	}
	for _, k := range got {
		if _, ok := want[k]; !ok {
			t.Fatalf("listed %q, never written", k)
		}
	}
}
