package raftnode_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
	"github.com/ringkv/ringkv/ring"
)

// A plan counts exactly the keys whose group the change would alter, per
// source and destination, and changes nothing.
func TestPlanCountsTheKeysThatWouldMove(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	n := c.Members[1].Node
	var keys []string
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("plan/%04d", i)
		mustPut(t, c.Members[i%3].Node, k, "0123456789")
		keys = append(keys, k)
	}
	cur := n.Layout().RingView()
	for _, tc := range []struct {
		change layout.RingChange
		next   func() (*ring.Ring, error)
	}{
		{layout.RingChange{Add: &layout.GroupWeight{Group: 4, Weight: 1}}, func() (*ring.Ring, error) { return cur.AddGroup(4, 1) }},
		{layout.RingChange{Remove: 2}, func() (*ring.Ring, error) { return cur.RemoveGroup(2) }},
		{layout.RingChange{Weight: &layout.GroupWeight{Group: 3, Weight: 2}}, func() (*ring.Ring, error) { return cur.SetWeight(3, 2) }},
	} {
		p, err := n.Plan(raftnodetest.Ctx(t, 10*time.Second), tc.change, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.change, err)
		}
		nr, err := tc.next()
		if err != nil {
			t.Fatal(err)
		}
		want := map[[2]base.GroupID]uint64{}
		var moved uint64
		for _, k := range keys {
			from, _ := cur.Lookup([]byte(k))
			to, _ := nr.Lookup([]byte(k))
			if from != to {
				want[[2]base.GroupID{base.GroupID(from), base.GroupID(to)}]++
				moved++
			}
		}
		got := map[[2]base.GroupID]uint64{}
		for _, tr := range p.Transfers {
			got[[2]base.GroupID{tr.From, tr.To}] = tr.Keys
			if tr.Keys > 0 && tr.Bytes != tr.Keys*(9+10) {
				t.Fatalf("%s: transfer %d->%d: %d bytes for %d keys", tc.change, tr.From, tr.To, tr.Bytes, tr.Keys)
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: plan moves %d keys %d->%d, the rings say %d (plan %+v)", tc.change, got[k], k[0], k[1], v, p.Transfers)
			}
		}
		if p.MovedKeys != moved || p.TotalKeys != uint64(len(keys)) || p.Epoch != cur.Epoch() || p.NextEpoch != cur.Epoch()+1 {
			t.Fatalf("%s: moved %d of %d keys, epochs %d->%d; want %d of %d, %d->%d", tc.change, p.MovedKeys, p.TotalKeys,
				p.Epoch, p.NextEpoch, moved, len(keys), cur.Epoch(), cur.Epoch()+1)
		}
		if p.MovedShare > 1.2*p.IdealShare || p.MovedShare < p.IdealShare/1.2 || len(p.Ranges) == 0 {
			t.Fatalf("%s: moves %.3f of the space in %d ranges, ideal %.3f", tc.change, p.MovedShare, len(p.Ranges), p.IdealShare)
		}
	}
	if n.Layout().RingView().Epoch() != cur.Epoch() {
		t.Fatal("planning changed the ring")
	}
	for _, bad := range []layout.RingChange{{Remove: 9}, {Add: &layout.GroupWeight{Group: 1, Weight: 1}}, {},
		{Weight: &layout.GroupWeight{Group: 1, Weight: 1}}, {Add: &layout.GroupWeight{Group: 5, Weight: 1}, Remove: 1}} {
		if _, err := n.Plan(raftnodetest.Ctx(t, 5*time.Second), bad, false); !errors.Is(err, base.ErrBadRequest) {
			t.Fatalf("plan %+v: %v, want a bad request", bad, err)
		}
	}
}
