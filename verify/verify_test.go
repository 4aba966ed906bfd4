package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
)

// fakeCluster is three replicas of group 1 held in memory, each with its
// entries and the tree it recorded at the verification index; Ask answers
// as a node's replica side does.
type fakeCluster struct {
	layout  *layout.Layout
	data    map[base.NodeID]map[string]string
	trees   map[base.NodeID]*snapshot.Tree
	mu      sync.Mutex
	repairs []base.NodeID
	// noRoot makes the verification entry record no root.
	noRoot bool
}

const depth, index = 6, 10

func newFake(t *testing.T, data map[base.NodeID]map[string]string) *fakeCluster {
	t.Helper()
	c := &fakeCluster{data: data, trees: map[base.NodeID]*snapshot.Tree{},
		layout: &layout.Layout{Initialized: true, Groups: []layout.GroupInfo{{ID: 1, Replicas: []base.NodeID{"n1", "n2", "n3"}}}}}
	for _, id := range []base.NodeID{"n1", "n2", "n3"} {
		c.layout.Nodes = append(c.layout.Nodes, layout.NodeInfo{ID: id})
		tr, err := snapshot.NewTree(depth)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range data[id] {
			tr.Toggle(snapshot.KeyHash([]byte(k)), snapshot.EntryDigest([]byte(k), []byte(v), 1))
		}
		c.trees[id] = tr
	}
	return c
}

func (c *fakeCluster) Self() base.NodeID      { return "n1" }
func (c *fakeCluster) Layout() *layout.Layout { return c.layout }
func (c *fakeCluster) Logger() *slog.Logger   { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (c *fakeCluster) rootOf(id base.NodeID) string {
	r := c.trees[id].Root()
	return hex.EncodeToString(r[:])
}

func (c *fakeCluster) Do(_ context.Context, req protocol.Request) (protocol.Response, error) {
	if req.Op != protocol.OpVerify {
		return protocol.Response{}, fmt.Errorf("%w: %s", base.ErrBadRequest, req.Op)
	}
	if c.noRoot {
		return protocol.Response{}, nil
	}
	return protocol.Response{Verified: &protocol.Verified{Index: index, Root: c.rootOf("n1"), Depth: depth}}, nil
}

func (c *fakeCluster) Ask(_ context.Context, id base.NodeID, req protocol.Request) (protocol.Response, error) {
	tr := c.trees[id]
	switch req.Op {
	case protocol.OpVerifyResult:
		return protocol.Response{Verified: &protocol.Verified{Index: index, Root: c.rootOf(id), Depth: depth, DataRoot: c.rootOf(id)}}, nil
	case protocol.OpVerifyTree:
		ds, err := tr.Nodes(req.Level, req.Indexes)
		var resp protocol.Response
		for _, d := range ds {
			resp.Digests = append(resp.Digests, d[:])
		}
		return resp, err
	case protocol.OpLeafEntries:
		var resp protocol.Response
		for k, v := range c.data[id] {
			if slices.Contains(req.Indexes, tr.Leaf(snapshot.KeyHash([]byte(k)))) {
				d := snapshot.EntryDigest([]byte(k), []byte(v), 1)
				resp.Leaf = append(resp.Leaf, protocol.LeafEntry{Key: []byte(k), ModifyIndex: 1, Digest: d[:]})
			}
		}
		slices.SortFunc(resp.Leaf, func(a, b protocol.LeafEntry) int { return slices.Compare(a.Key, b.Key) })
		return resp, nil
	case protocol.OpRepair:
		c.mu.Lock()
		c.repairs = append(c.repairs, id)
		c.mu.Unlock()
		return protocol.Response{Repaired: &api.Repair{Done: true, From: "n1", Index: req.Index}}, nil
	}
	return protocol.Response{}, fmt.Errorf("%w: %s", base.ErrBadRequest, req.Op)
}

func replicas(divergent map[string]string) map[base.NodeID]map[string]string {
	good := map[string]string{}
	for i := range 200 {
		good[fmt.Sprintf("k%03d", i)] = fmt.Sprint(i)
	}
	return map[base.NodeID]map[string]string{"n1": good, "n2": good, "n3": divergent}
}

// A replica whose root differs from the majority's is named divergent,
// the differing keys are located through the trees, and only it is asked
// to repair; with NoRepair it is reported and left alone.
func TestGroupLocatesAndRepairsADivergentReplica(t *testing.T) {
	bad := map[string]string{}
	for k, v := range replicas(nil)["n1"] {
		bad[k] = v
	}
	bad["k042"] = "changed on disk"
	delete(bad, "k117")
	for _, repair := range []bool{true, false} {
		c := newFake(t, replicas(bad))
		v, err := Group(context.Background(), c, 1, Options{Deep: true, NoRepair: !repair})
		if err != nil {
			t.Fatal(err)
		}
		if v.Agree || v.Index != index || v.Root != c.rootOf("n1") {
			t.Fatalf("verification: agree %v index %d root %s", v.Agree, v.Index, v.Root)
		}
		for _, rr := range v.Replicas {
			if rr.Divergent != (rr.Node == "n3") {
				t.Fatalf("%s divergent: %v", rr.Node, rr.Divergent)
			}
		}
		d := v.Replicas[2].Diff
		if d == nil || !slices.Equal(d.Keys, []string{"k042", "k117"}) || len(d.Ranges) != 2 || d.Hashes == 0 {
			t.Fatalf("diff of n3: %+v", d)
		}
		wantRepairs := []base.NodeID{"n3"}
		if !repair {
			wantRepairs = nil
		}
		if !slices.Equal(c.repairs, wantRepairs) || (repair && (v.Replicas[2].Repair == nil || !v.Replicas[2].Repair.Done)) {
			t.Fatalf("repair %v: asked of %v, reported %+v", repair, c.repairs, v.Replicas[2].Repair)
		}
	}
}

// Replicas that agree are reported so, with nothing repaired; the tree
// served is the group root's.
func TestGroupAgreesAndServesTheTree(t *testing.T) {
	c := newFake(t, replicas(replicas(nil)["n1"]))
	v, err := Group(context.Background(), c, 1, Options{Deep: true})
	if err != nil || !v.Agree || len(c.repairs) != 0 {
		t.Fatalf("agreeing replicas: %+v %v, repairs %v", v, err, c.repairs)
	}
	tr, err := Tree(context.Background(), c, 1)
	if err != nil || tr.Root != v.Root || tr.Depth != depth || len(tr.Leaves) != 1<<depth {
		t.Fatalf("tree: root %s depth %d leaves %d %v", tr.Root, tr.Depth, len(tr.Leaves), err)
	}
}

// Answers that are missing or unknown fail the verification or the
// replica, never the node: a verification entry with no root, a group
// the layout lacks, a replica on a node the layout lacks.
func TestGroupRefusesWhatItCannotCheck(t *testing.T) {
	c := newFake(t, replicas(replicas(nil)["n1"]))
	c.noRoot = true
	if _, err := Group(context.Background(), c, 1, Options{}); !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("no root recorded: %v", err)
	}
	c.noRoot = false
	if _, err := Group(context.Background(), c, 9, Options{}); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	c.layout.Nodes = c.layout.Nodes[:2]
	v, err := Group(context.Background(), c, 1, Options{})
	if err != nil || v.Agree || v.Replicas[2].Error == "" {
		t.Fatalf("a replica on a node the layout lacks: %+v %v", v, err)
	}
}

func TestMajorityRoot(t *testing.T) {
	rs := func(roots ...string) []api.ReplicaRoot {
		var out []api.ReplicaRoot
		for _, r := range roots {
			out = append(out, api.ReplicaRoot{Root: r})
		}
		return out
	}
	for _, tc := range []struct {
		roots    []string
		fallback string
		want     string
	}{
		{[]string{"a", "a", "b"}, "b", "a"},
		{[]string{"a", "b"}, "b", "b"},
		{[]string{"a", "b", ""}, "a", "a"},
		{[]string{"", ""}, "x", "x"},
	} {
		if got := majorityRoot(rs(tc.roots...), tc.fallback); got != tc.want {
			t.Errorf("majorityRoot(%v, %s) = %s, want %s", tc.roots, tc.fallback, got, tc.want)
		}
	}
}
