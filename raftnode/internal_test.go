package raftnode

import (
	"bytes"
	"io"

	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/store"
)

func TestApplyMeta(t *testing.T) {
	n1 := NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	l, err := applyMeta(&Layout{}, metaCommand{Op: "init", Node: &n1, Groups: 3, VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Initialized || len(l.Groups) != 3 || l.RingView().Epoch() != 3 {
		t.Fatalf("after init: %+v", l)
	}
	if again, _ := applyMeta(l, metaCommand{Op: "init", Node: &n1, Groups: 5, VNodes: 8}); again != nil {
		t.Fatal("second init changed the layout")
	}
	// Up to the replication factor, a new node joins every group; beyond
	// it, groups keep their replicas (the placer moves some later).
	for i := 2; i <= 4; i++ {
		n := NodeInfo{ID: base.NodeID(fmt.Sprintf("n%d", i)), HTTPAddr: "h", RaftAddr: "r"}
		if l, err = applyMeta(l, metaCommand{Op: "add_node", Node: &n}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range l.Groups {
		if len(g.Replicas) != DefaultReplication || contains(g.Replicas, "n4") {
			t.Fatalf("group %d replicas %v", g.ID, g.Replicas)
		}
	}
	l, err = applyMeta(l, metaCommand{Op: "remove_node", Node: &NodeInfo{ID: "n2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Node("n2"); ok || len(l.Groups[0].Replicas) != DefaultReplication-1 {
		t.Fatalf("after remove: %+v", l)
	}
	if _, err := applyMeta(l, metaCommand{Op: "remove_node", Node: &NodeInfo{ID: "n2"}}); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
	// The layout survives a snapshot round trip with identical routing.
	back, err := decodeLayout(strings.NewReader(string(mustJSON(l))))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		k := []byte(fmt.Sprintf("key%d", i))
		a, _ := l.Route(k)
		b, _ := back.Route(k)
		if a != b {
			t.Fatalf("Route(%s) = %d after snapshot, want %d", k, b, a)
		}
	}
}

func TestLeaderPlanSpreads(t *testing.T) {
	nodes := []NodeInfo{{ID: "c"}, {ID: "a"}, {ID: "b"}}
	// Ids as ring changes leave them: sparse, not in a row.
	for _, ids := range [][]base.GroupID{{1, 2, 3}, {1, 4, 7}, {2, 5, 6, 9, 12, 13}} {
		l := &Layout{Initialized: true, Nodes: nodes}
		for _, id := range ids {
			l.Groups = append(l.Groups, GroupInfo{ID: id, Replicas: []base.NodeID{"a", "b", "c"}})
		}
		count := map[base.NodeID]int{}
		for _, leader := range l.leaderPlan() {
			count[leader]++
		}
		for _, v := range nodes {
			if count[v.ID] != len(ids)/3 {
				t.Fatalf("groups %v: leaders per node %v, want %d each", ids, count, len(ids)/3)
			}
		}
	}
}

func TestWireErrorsRoundTrip(t *testing.T) {
	for _, err := range []error{base.ErrNotFound, base.ErrNoLeader, base.ErrUnavailable, base.ErrOutcomeUnknown, base.ErrClusterFull, base.ErrConflict, base.ErrBadRequest,
		&base.NotLeaderError{Group: 2, Leader: "n3"}, &base.CASFailedError{Current: 9}} {
		back := base.FromWire(base.ToWire(err))
		if base.Code(back) != base.Code(err) {
			t.Errorf("%v came back as %v", err, back)
		}
	}
	var nl *base.NotLeaderError
	if !errors.As(base.FromWire(base.ToWire(&base.NotLeaderError{Group: 2, Leader: "n3"})), &nl) || nl.Leader != "n3" || nl.Group != 2 {
		t.Errorf("NotLeaderError lost its fields: %+v", nl)
	}
}

func FuzzDecodeMetaCommand(f *testing.F) {
	f.Add(`{"op":"init","node":{"id":"n1"},"groups":3,"vnodes":128}`)
	f.Add(`{"op":"add_node","node":{"id":"n2","http_addr":"a","raft_addr":"b"}}`)
	f.Add(`{"op":"remove_node"}`)
	f.Add(`{"op":"node_state","node":{"id":"n2"},"draining":true,"leaving":true}`)
	f.Add(`{"op":"replica_move_start","move":{"group":1,"from":"n1","to":"n4","reason":"balance"}}`)
	f.Add(`{"op":"replica_move_end","move":{"group":2,"to":"n4"},"aborted":true}`)
	// A populated layout: 4 nodes, 3 groups of 3 replicas.
	grown, err := applyMeta(&Layout{}, metaCommand{Op: "init", Node: &NodeInfo{ID: "n1"}, Groups: 3, VNodes: 8})
	if err != nil {
		f.Fatal(err)
	}
	for _, id := range []base.NodeID{"n2", "n3", "n4"} {
		if grown, err = applyMeta(grown, metaCommand{Op: "add_node", Node: &NodeInfo{ID: id}}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeMetaCommand([]byte(s))
		if err != nil {
			return
		}
		// Whatever decodes must apply without panicking, deterministically,
		// and leave the layout's invariants: replicas on members, no more
		// than the factor.
		for _, l := range []*Layout{{}, grown} {
			a, errA := applyMeta(l, c)
			b, errB := applyMeta(l, c)
			if (errA == nil) != (errB == nil) || string(mustJSON(a)) != string(mustJSON(b)) {
				t.Fatal("applyMeta is not deterministic")
			}
			if a == nil {
				continue
			}
			for _, g := range a.Groups {
				if len(g.Replicas) > a.replication() {
					t.Fatalf("group %d has %d replicas", g.ID, len(g.Replicas))
				}
				for _, id := range g.Replicas {
					if _, ok := a.Node(id); !ok {
						t.Fatalf("group %d has a replica on non-member %s", g.ID, id)
					}
				}
			}
		}
	})
}

func TestPackSplitsRepeatedKeysAndKeepsOthersAlone(t *testing.T) {
	prop := func(key string, cmd string) *proposal {
		p := &proposal{cmd: []byte(cmd), done: make(chan struct{})}
		if key != "" {
			p.key = []byte(key)
		}
		return p
	}
	dropped := prop("x", "dropped")
	dropped.state.Store(propDropped)
	wave := []*proposal{prop("a", "a1"), prop("b", "b1"), prop("a", "a2"), prop("", "verify"), dropped, prop("c", "c1"), prop("a", "a3")}
	entries := pack(wave)
	var shapes []int
	for _, e := range entries {
		shapes = append(shapes, len(e.props))
	}
	// [a1 b1 c1] [a2] [verify] [a3]: each key once per entry, the
	// unpackable alone, the dropped nowhere.
	if fmt.Sprint(shapes) != "[3 1 1 1]" {
		t.Fatalf("entries of %v", shapes)
	}
	if string(entries[1].cmd) != "a2" || string(entries[2].cmd) != "verify" || string(entries[3].cmd) != "a3" {
		t.Fatalf("single entries carry %q %q %q", entries[1].cmd, entries[2].cmd, entries[3].cmd)
	}
	if !store.IsBatch(entries[0].cmd) {
		t.Fatal("the first entry is not packed")
	}
	if dropped.state.Load() != propDropped {
		t.Fatal("a dropped proposal was sent")
	}
}

// The metadata state machine knows which log index its layout reflects,
// also after a failed command and across a snapshot and restore: a node
// compares it with its peers' to learn that it was removed.
func TestMetaFSMIndex(t *testing.T) {
	f := newMetaFSM()
	n1 := NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	if err := f.Apply(&raft.Log{Index: 3, Data: mustJSON(metaCommand{Op: "init", Node: &n1, Groups: 2, VNodes: 8, ClusterID: "abc"})}); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.Apply(&raft.Log{Index: 4, Data: mustJSON(metaCommand{Op: "replica_move_end", Move: &ReplicaMove{Group: 9, To: "n1"}})}).(error); err == nil {
		t.Fatal("ending a move that never started succeeded")
	}
	l, index := f.LayoutAt()
	if index != 4 || l.ClusterID != "abc" {
		t.Fatalf("after entries 3 and 4: index %d cluster %q", index, l.ClusterID)
	}
	n2 := NodeInfo{ID: "n2", HTTPAddr: "127.0.0.1:3", RaftAddr: "127.0.0.1:4"}
	if err := f.Apply(&raft.Log{Index: 5, Data: mustJSON(metaCommand{Op: "add_node", Node: &n2})}); err != nil {
		t.Fatal(err)
	}
	if l, index = f.LayoutAt(); index != 5 || l.ClusterID != "abc" || len(l.Nodes) != 2 {
		t.Fatalf("after a join: index %d cluster %q nodes %d", index, l.ClusterID, len(l.Nodes))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newMetaFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	back, bindex := g.LayoutAt()
	if bindex != 5 || back.Index != 0 || back.ClusterID != "abc" || len(back.Groups) != 2 {
		t.Fatalf("restored: index %d, layout index field %d, cluster %q, groups %d", bindex, back.Index, back.ClusterID, len(back.Groups))
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
