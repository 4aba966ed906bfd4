package raftnode_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
)

func keyInGroup(t *testing.T, n *raftnode.Node, g base.GroupID, prefix string) string {
	t.Helper()
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if l, _ := n.Lookup([]byte(k)); l.Group == g {
			return k
		}
	}
}

// TestAsyncWriteReadAtMinIndexAndWait: an asynchronous write answers with
// its index and term; a stale read on any replica with min_index sees it;
// a wait for it returns once committed.
func TestAsyncWriteReadAtMinIndexAndWait(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	g := base.GroupID(2)
	key := keyInGroup(t, c.Members[0].Node, g, "a")
	for i := range c.Members {
		res, _, err := c.Members[i].Node.Put(raftnodetest.Ctx(t, 5*time.Second), []byte(key), []byte(fmt.Sprint("v", i)), raftnode.WriteOptions{Async: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Async || res.RaftIndex == 0 || res.RaftTerm == 0 || res.Group != g || res.Index != res.RaftIndex {
			t.Fatalf("async write result %+v", res)
		}
		for j := range c.Members {
			got, err := c.Members[j].Node.GetAt(raftnodetest.Ctx(t, 5*time.Second), []byte(key), protocol.Stale, res.RaftIndex)
			if err != nil || string(got.Value) != fmt.Sprint("v", i) {
				t.Fatalf("stale read at min index %d on member %d: %q, %v", res.RaftIndex, j, got.Value, err)
			}
		}
		if _, err := c.Members[(i+1)%3].Node.Wait(raftnodetest.Ctx(t, 5*time.Second), g, res.RaftIndex, res.RaftTerm); err != nil {
			t.Fatalf("wait for a committed async write: %v", err)
		}
	}
	if _, _, err := c.Members[0].Node.Put(raftnodetest.Ctx(t, time.Second), []byte(key), []byte("x"), raftnode.WriteOptions{Async: true, HasCAS: true}); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("async CAS: %v, want ErrBadRequest", err)
	}
}

// TestAsyncWriteLostWithItsLeader: a leader cut off from its followers
// still acknowledges an asynchronous write (it is in its own log), which
// can never commit; the majority elects another leader and moves on, and a
// wait for the write reports it lost instead of hiding it. A synchronous
// write on the cut-off leader is never acknowledged.
func TestAsyncWriteLostWithItsLeader(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	g := base.GroupID(1)
	key := keyInGroup(t, c.Members[0].Node, g, "lost")
	old := c.WaitForLeader(g)
	c.Partition(old)
	res, _, err := c.Members[old].Node.Put(raftnodetest.Ctx(t, 5*time.Second), []byte(key), []byte("doomed"), raftnode.WriteOptions{Async: true})
	if err != nil {
		t.Fatalf("a leader acknowledges an async write it has appended: %v", err)
	}
	if _, _, err := c.Members[old].Node.Put(raftnodetest.Ctx(t, 500*time.Millisecond), []byte(key), []byte("sync"), raftnode.WriteOptions{}); err == nil {
		t.Fatal("a cut-off leader acknowledged a synchronous write")
	}
	other := (old + 1) % 3
	c.Eventually("majority accepts writes", 20*time.Second, func() error {
		_, _, err := c.Members[other].Node.Put(raftnodetest.Ctx(t, 2*time.Second), []byte(key), []byte("kept"), raftnode.WriteOptions{})
		return err
	})
	for i := 0; i < 10; i++ { // push the new term's entries past the lost index
		if _, _, err := c.Members[other].Node.Put(raftnodetest.Ctx(t, 5*time.Second), []byte(key), []byte("kept"), raftnode.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.Heal()
	c.Eventually("the wait reports the write lost", 20*time.Second, func() error {
		_, err := c.Members[other].Node.Wait(raftnodetest.Ctx(t, 2*time.Second), g, res.RaftIndex, res.RaftTerm)
		if errors.Is(err, base.ErrLost) {
			return nil
		}
		return fmt.Errorf("wait: %v", err)
	})
	c.Eventually("every replica holds the majority's value", 20*time.Second, func() error {
		for i := range c.Members {
			got, err := c.Members[i].Node.GetAt(raftnodetest.Ctx(t, 2*time.Second), []byte(key), protocol.Stale, 0)
			if err != nil || string(got.Value) != "kept" {
				return fmt.Errorf("member %d: %q, %v", i, got.Value, err)
			}
		}
		return nil
	})
}
