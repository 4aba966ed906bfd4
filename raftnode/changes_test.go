package raftnode_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
	"github.com/ringkv/ringkv/store"
)

// A group's change history reads the same from every node (its leader
// answers, forwarded to from the others), waits for a change, and goes
// on without a gap or a repeat once its leader is killed.
func TestChangesFromEveryNodeAcrossALeaderChange(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Configure: func(cfg *raftnode.Config) { cfg.WatchHistory = 8 }})
	g := base.GroupID(2)
	var keys []string
	for i := 0; i < 5; i++ {
		keys = append(keys, keyInGroup(t, c.Members[0].Node, g, fmt.Sprintf("w%d-", i)))
	}
	put := func(m int, key, value string) {
		t.Helper()
		if _, _, err := c.Members[m].Node.Put(raftnodetest.Ctx(t, 10*time.Second), []byte(key), []byte(value), raftnode.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys[:3] {
		put(i%3, k, "a")
	}
	if _, _, err := c.Members[1].Node.Delete(raftnodetest.Ctx(t, 10*time.Second), []byte(keys[0]), raftnode.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"put " + keys[0], "put " + keys[1], "put " + keys[2], "del " + keys[0]}
	describe := func(cs []store.Change) []string {
		var out []string
		for _, ch := range cs {
			op := "put "
			if ch.Delete {
				op = "del "
			}
			out = append(out, op+string(ch.Key))
		}
		return out
	}
	for i, m := range c.Members {
		p, err := m.Node.Changes(raftnodetest.Ctx(t, 10*time.Second), g, raftnode.ChangesRequest{})
		if err != nil {
			t.Fatalf("changes from %s: %v", m.ID, err)
		}
		if fmt.Sprint(describe(p.Changes)) != fmt.Sprint(want) || p.Changes[0].Seq != 1 || p.Last != 4 {
			t.Fatalf("changes from member %d: %v (last %d), want %v", i, describe(p.Changes), p.Last, want)
		}
	}
	// A read that waits is answered by the next change.
	got := make(chan store.ChangesPage, 1)
	go func() {
		p, err := c.Members[2].Node.Changes(raftnodetest.Ctx(t, 30*time.Second), g, raftnode.ChangesRequest{After: 4, Wait: 20 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	put(0, keys[3], "b")
	if p := <-got; len(p.Changes) != 1 || string(p.Changes[0].Key) != keys[3] || p.Changes[0].Seq != 5 {
		t.Fatalf("a waiting read got %v", describe(p.Changes))
	}
	// Kill the leader: the history goes on from another node, numbered on.
	leader := c.WaitForLeader(g)
	c.Kill(leader)
	c.WaitForLeader(g) // a write sent before would go to the dead leader: its outcome unknown
	other := (leader + 1) % 3
	put(other, keys[4], "c")
	p, err := c.Members[other].Node.Changes(raftnodetest.Ctx(t, 30*time.Second), g, raftnode.ChangesRequest{After: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Seq != 6 || string(p.Changes[0].Key) != keys[4] {
		t.Fatalf("after the leader's death: %v", describe(p.Changes))
	}
	// Past the window of 8: the oldest are no longer served.
	for i := 0; i < 4; i++ {
		put(other, keys[1], fmt.Sprint(i))
	}
	_, err = c.Members[other].Node.Changes(raftnodetest.Ctx(t, 10*time.Second), g, raftnode.ChangesRequest{After: 0})
	var ce *base.CompactedError
	if !errors.As(err, &ce) || ce.Group != g || ce.First != 3 {
		t.Fatalf("a read from 0 once 10 changes were made: %v, want compacted, first 3", err)
	}
}
