package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/base"
)

func TestApplyMeta(t *testing.T) {
	n1 := NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	l, err := Apply(&Layout{}, Command{Op: "init", Node: &n1, Groups: 3, VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Initialized || len(l.Groups) != 3 || l.RingView().Epoch() != 3 {
		t.Fatalf("after init: %+v", l)
	}
	if again, _ := Apply(l, Command{Op: "init", Node: &n1, Groups: 5, VNodes: 8}); again != nil {
		t.Fatal("second init changed the layout")
	}
	// Up to the replication factor, a new node joins every group; beyond
	// it, groups keep their replicas (the placer moves some later).
	for i := 2; i <= 4; i++ {
		n := NodeInfo{ID: base.NodeID(fmt.Sprintf("n%d", i)), HTTPAddr: "h", RaftAddr: "r"}
		if l, err = Apply(l, Command{Op: "add_node", Node: &n}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range l.Groups {
		if len(g.Replicas) != DefaultReplication || slices.Contains(g.Replicas, "n4") {
			t.Fatalf("group %d replicas %v", g.ID, g.Replicas)
		}
	}
	l, err = Apply(l, Command{Op: "remove_node", Node: &NodeInfo{ID: "n2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Node("n2"); ok || len(l.Groups[0].Replicas) != DefaultReplication-1 {
		t.Fatalf("after remove: %+v", l)
	}
	if _, err := Apply(l, Command{Op: "remove_node", Node: &NodeInfo{ID: "n2"}}); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("remove twice: %v", err)
	}
	// The layout survives a snapshot round trip with identical routing.
	back, err := Decode(strings.NewReader(string(mustJSON(l))))
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
		for _, leader := range l.LeaderPlan() {
			count[leader]++
		}
		for _, v := range nodes {
			if count[v.ID] != len(ids)/3 {
				t.Fatalf("groups %v: leaders per node %v, want %d each", ids, count, len(ids)/3)
			}
		}
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
	grown, err := Apply(&Layout{}, Command{Op: "init", Node: &NodeInfo{ID: "n1"}, Groups: 3, VNodes: 8})
	if err != nil {
		f.Fatal(err)
	}
	for _, id := range []base.NodeID{"n2", "n3", "n4"} {
		if grown, err = Apply(grown, Command{Op: "add_node", Node: &NodeInfo{ID: id}}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := DecodeCommand([]byte(s))
		if err != nil {
			return
		}
		// Whatever decodes must apply without panicking, deterministically,
		// and leave the layout's invariants: replicas on members, no more
		// than the factor.
		for _, l := range []*Layout{{}, grown} {
			a, errA := Apply(l, c)
			b, errB := Apply(l, c)
			if (errA == nil) != (errB == nil) || string(mustJSON(a)) != string(mustJSON(b)) {
				t.Fatal("Apply is not deterministic")
			}
			if a == nil {
				continue
			}
			for _, g := range a.Groups {
				if len(g.Replicas) > a.ReplicasPerGroup() {
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
