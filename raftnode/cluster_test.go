package raftnode_test

import (
	"bytes"
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

// mustPut writes key=value, retrying a write whose outcome is unknown (as a
// client would: the put is idempotent) until the deadline.
func mustPut(t *testing.T, n *raftnode.Node, key, value string) protocol.WriteResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, _, err := n.Put(raftnodetest.Ctx(t, 10*time.Second), []byte(key), []byte(value), raftnode.WriteOptions{})
		if err == nil {
			return res
		}
		if !errors.Is(err, base.ErrOutcomeUnknown) || time.Now().After(deadline) {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
}

func mustGet(t *testing.T, n *raftnode.Node, key string, c protocol.Consistency) string {
	t.Helper()
	res, err := n.Get(raftnodetest.Ctx(t, 10*time.Second), []byte(key), c)
	if err != nil {
		t.Fatalf("Get(%q) on %s: %v", key, n.ID(), err)
	}
	return string(res.Value)
}

func TestWritesThroughAnyNodeReadBackEverywhere(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	want := map[string]string{}
	for i := 0; i < 60; i++ {
		k, v := fmt.Sprintf("key/%03d", i), fmt.Sprintf("value-%d", i)
		mustPut(t, c.Members[i%3].Node, k, v)
		want[k] = v
	}
	for _, m := range c.Members {
		for k, v := range want {
			if got := mustGet(t, m.Node, k, protocol.Linearizable); got != v {
				t.Fatalf("Get(%q) on %s = %q, want %q", k, m.ID, got, v)
			}
		}
	}
	// Stale reads agree once every replica has applied everything, and
	// every replica of a group has the same Merkle root at the same index.
	c.WaitConverged()
	for g := base.GroupID(1); g <= 3; g++ {
		want := c.GroupStatus(0, g)
		for i := range c.Members {
			got := c.GroupStatus(i, g)
			if got.MerkleRoot == "" || got.MerkleRoot != want.MerkleRoot || got.MerkleIndex != want.MerkleIndex {
				t.Fatalf("group %d: replica %d root %s@%d, replica 0 %s@%d", g, i, got.MerkleRoot, got.MerkleIndex, want.MerkleRoot, want.MerkleIndex)
			}
		}
	}
	for _, m := range c.Members {
		for k, v := range want {
			if got := mustGet(t, m.Node, k, protocol.Stale); got != v {
				t.Fatalf("stale Get(%q) on %s = %q, want %q", k, m.ID, got, v)
			}
		}
	}
	// A listing through any node merges all groups in key order, in
	// pages of 4 keys or 100 bytes from each group.
	defer raftnode.SetListPage(4, 100)()
	kvs, err := c.Members[1].Node.List(raftnodetest.Ctx(t, 10*time.Second), raftnode.ListOptions{Prefix: []byte("key/"), Consistency: protocol.Linearizable})
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != len(want) {
		t.Fatalf("List returned %d keys, want %d", len(kvs), len(want))
	}
	groups := map[base.GroupID]bool{}
	for i, kv := range kvs {
		groups[kv.Group] = true
		if i > 0 && bytes.Compare(kvs[i-1].Key, kv.Key) >= 0 {
			t.Fatalf("List out of order at %d: %q then %q", i, kvs[i-1].Key, kv.Key)
		}
	}
	if len(groups) != 3 {
		t.Errorf("keys landed in %d groups, want all 3", len(groups))
	}
	page, err := c.Members[2].Node.List(raftnodetest.Ctx(t, 10*time.Second), raftnode.ListOptions{Prefix: []byte("key/"), After: []byte("key/010"), Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 5 || string(page[0].Key) != "key/011" || string(page[4].Key) != "key/015" {
		t.Errorf("page after key/010 limit 5 = %d entries starting %q", len(page), page[0].Key)
	}
}

func TestCASAndDelete(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Nodes: 3})
	n := c.Members[2].Node
	ctx := raftnodetest.Ctx(t, 10*time.Second)
	res, _, err := n.Put(ctx, []byte("lock"), []byte("a"), raftnode.WriteOptions{HasCAS: true, CAS: 0})
	if err != nil {
		t.Fatalf("create-only put: %v", err)
	}
	_, _, err = n.Put(ctx, []byte("lock"), []byte("b"), raftnode.WriteOptions{HasCAS: true, CAS: 0})
	var cf *base.CASFailedError
	if !errors.As(err, &cf) || cf.Current != res.Index {
		t.Fatalf("second create-only put: %v, want CAS failure with current %d", err, res.Index)
	}
	if _, _, err := n.Put(ctx, []byte("lock"), []byte("c"), raftnode.WriteOptions{HasCAS: true, CAS: res.Index}); err != nil {
		t.Fatalf("CAS with right index: %v", err)
	}
	if got := mustGet(t, c.Members[0].Node, "lock", protocol.Linearizable); got != "c" {
		t.Fatalf("after CAS value = %q, want c", got)
	}
	if _, _, err := n.Delete(ctx, []byte("lock"), raftnode.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Members[1].Node.Get(ctx, []byte("lock"), protocol.Linearizable); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("Get after delete: %v, want ErrNotFound", err)
	}
	if _, _, err := n.Delete(ctx, []byte("lock"), raftnode.WriteOptions{}); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("Delete of absent key: %v, want ErrNotFound", err)
	}
}

func TestLeadersSpreadAndRebalanceAfterReturn(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	spread := func() error {
		led := map[base.NodeID]int{}
		for g := base.GroupID(1); g <= 3; g++ {
			gs := c.GroupStatus(0, g)
			if gs.Leader == "" {
				return fmt.Errorf("group %d has no leader", g)
			}
			led[gs.Leader]++
		}
		if len(led) != 3 {
			return fmt.Errorf("leaders %v, want one group per node", led)
		}
		return nil
	}
	c.Eventually("one leader per node", 30*time.Second, spread)
	victim := c.WaitForLeader(2)
	c.Kill(victim)
	c.WaitForLeader(2)
	c.Restart(victim)
	c.WaitReady()
	c.Eventually("one leader per node after the node returned", 30*time.Second, func() error {
		if c.Members[0].Node == nil {
			return nil
		}
		return spread()
	})
}

func TestLeaderKillFailoverAndCatchUp(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	g := base.GroupID(1)
	leader := c.WaitForLeader(g)
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		k := fmt.Sprintf("k%d", i)
		if l, _ := c.Members[0].Node.Lookup([]byte(k)); l.Group == g {
			keys = append(keys, k)
		}
	}
	for _, k := range keys[:10] {
		mustPut(t, c.Members[leader].Node, k, "before")
	}
	c.Kill(leader)
	survivor := (leader + 1) % 3
	for _, k := range keys {
		mustPut(t, c.Members[survivor].Node, k, "after")
	}
	c.Restart(leader)
	c.WaitReady()
	c.WaitForApplied(g, c.GroupStatus(survivor, g).AppliedIndex)
	for _, k := range keys {
		if got := mustGet(t, c.Members[leader].Node, k, protocol.Stale); got != "after" {
			t.Fatalf("restarted node: Get(%q) = %q, want after", k, got)
		}
	}
}

// A leader cut off from its followers, while clients still reach it, must
// not answer a linearizable read with a value the majority has replaced.
func TestPartitionedLeaderServesNoStaleRead(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	g := base.GroupID(3)
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprintf("p%d", i)
		if l, _ := c.Members[0].Node.Lookup([]byte(key)); l.Group == g {
			break
		}
	}
	old := c.WaitForLeader(g)
	mustPut(t, c.Members[old].Node, key, "v1")
	c.Partition(old)
	other := (old + 1) % 3
	// The majority side elects a new leader and accepts a new value.
	c.Eventually("majority accepts a write", 20*time.Second, func() error {
		_, _, err := c.Members[other].Node.Put(raftnodetest.Ctx(t, 2*time.Second), []byte(key), []byte("v2"), raftnode.WriteOptions{})
		return err
	})
	for i := 0; i < 5; i++ {
		res, err := c.Members[old].Node.Get(raftnodetest.Ctx(t, 2*time.Second), []byte(key), protocol.Linearizable)
		if err == nil && string(res.Value) != "v2" {
			t.Fatalf("partitioned old leader answered %q, a value replaced by an acknowledged write", res.Value)
		}
	}
	c.Heal()
	c.Eventually("old leader's node reads the new value", 20*time.Second, func() error {
		res, err := c.Members[old].Node.Get(raftnodetest.Ctx(t, 2*time.Second), []byte(key), protocol.Linearizable)
		if err != nil {
			return err
		}
		if string(res.Value) != "v2" {
			return fmt.Errorf("read %q", res.Value)
		}
		return nil
	})
}

func TestFollowerCatchesUpBySnapshotInstall(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 1, SnapshotThreshold: 64, TrailingLogs: 16})
	g := base.GroupID(1)
	leader := c.WaitForLeader(g)
	lagger := (leader + 1) % 3
	c.Kill(lagger)
	for i := 0; i < 400; i++ {
		mustPut(t, c.Members[leader].Node, fmt.Sprintf("s%04d", i), fmt.Sprintf("v%d", i))
	}
	// Both live replicas must have compacted: whichever of them leads
	// once the lagger is back (leadership may move then), it can only
	// catch the lagger up by sending a snapshot.
	c.Eventually("live replicas compacted past the lagger", 20*time.Second, func() error {
		for i := range c.Members {
			if i == lagger {
				continue
			}
			if st := c.GroupStatus(i, g); st.SnapshotIndex < 100 {
				return fmt.Errorf("%s snapshot index %d", c.Members[i].ID, st.SnapshotIndex)
			}
		}
		return nil
	})
	c.Restart(lagger)
	c.WaitReady()
	target := c.GroupStatus(leader, g).AppliedIndex
	c.WaitForApplied(g, target)
	// The state machine has the snapshot's data before hashicorp/raft
	// records the install (its snapshot index, log and commit index follow
	// a moment later): wait for raft's side too. No live log holds the
	// entries the lagger misses, so it can only get there by a snapshot.
	c.Eventually("lagger's raft caught up by a snapshot", 20*time.Second, func() error {
		if st := c.GroupStatus(lagger, g); st.SnapshotIndex < 100 || st.CommitIndex < target {
			var all []string
			for i := range c.Members {
				o := c.GroupStatus(i, g)
				all = append(all, fmt.Sprintf("%s: state %s, snapshot %d, applied %d, commit %d, last %d", c.Members[i].ID, o.State, o.SnapshotIndex, o.AppliedIndex, o.CommitIndex, o.LastIndex))
			}
			return fmt.Errorf("lagger %s not caught up by a snapshot (%s)", c.Members[lagger].ID, strings.Join(all, "; "))
		}
		return nil
	})
	kvs, err := c.Members[lagger].Node.List(raftnodetest.Ctx(t, 5*time.Second), raftnode.ListOptions{Prefix: []byte("s"), Consistency: protocol.Stale})
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 400 {
		t.Fatalf("lagger holds %d keys after catching up, want 400", len(kvs))
	}
}

func TestMembership(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	// Each step has its own deadline: a slow machine spends most of one
	// shared by the whole test before its last steps.
	ctx := func() context.Context { return raftnodetest.Ctx(t, 20*time.Second) }
	err := c.Members[1].Node.Join(ctx(), layout.NodeInfo{ID: "node2", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	if !errors.Is(err, base.ErrConflict) {
		t.Fatalf("join with a taken id and other addresses: %v, want ErrConflict", err)
	}
	// A node that does not answer at its Raft address is not admitted:
	// as a metadata voter it would count in every quorum.
	err = c.Members[1].Node.Join(ctx(), layout.NodeInfo{ID: "f", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	if !errors.Is(err, base.ErrUnavailable) || !strings.Contains(err.Error(), "does not answer at raft_addr 127.0.0.1:2") {
		t.Fatalf("join of a node that does not answer: %v, want unavailable", err)
	}
	// Nor one claiming another node's Raft address.
	err = c.Members[1].Node.Join(ctx(), layout.NodeInfo{ID: "f", HTTPAddr: "127.0.0.1:1", RaftAddr: c.Members[2].RaftAddr})
	if !errors.Is(err, base.ErrConflict) {
		t.Fatalf("join at node3's Raft address: %v, want a conflict", err)
	}
	if n := len(c.Members[0].Node.Layout().Nodes); n != 3 {
		t.Fatalf("refused joins left %d members", n)
	}
	if _, err := c.Members[0].Node.RemoveNode(ctx(), "nodeX", raftnode.RemoveOptions{}); !errors.Is(err, base.ErrNotFound) {
		t.Fatalf("remove unknown node: %v, want ErrNotFound", err)
	}
	// No other node can take node3's replicas: it is removed at once.
	if rm, err := c.Members[0].Node.RemoveNode(ctx(), "node3", raftnode.RemoveOptions{}); err != nil || rm.Draining {
		t.Fatalf("remove node3: %+v, %v", rm, err)
	}
	c.Eventually("node3 gone from every group", 20*time.Second, func() error {
		for g := base.GroupID(1); g <= 3; g++ {
			if v := c.GroupStatus(0, g).Voters; len(v) != 2 {
				return fmt.Errorf("group %d voters %v", g, v)
			}
		}
		if n := len(c.Members[0].Node.Layout().Nodes); n != 2 {
			return fmt.Errorf("layout has %d nodes", n)
		}
		return nil
	})
	// Two nodes still serve writes.
	mustPut(t, c.Members[1].Node, "after-remove", "ok")
	if got := mustGet(t, c.Members[0].Node, "after-remove", protocol.Linearizable); got != "ok" {
		t.Fatalf("Get = %q", got)
	}
	// A second removal would leave every group on one voter, short of a
	// majority of the factor (3): refused, naming them, and nothing moves.
	_, err = c.Members[0].Node.RemoveNode(ctx(), "node2", raftnode.RemoveOptions{})
	if !errors.Is(err, base.ErrConflict) || !strings.Contains(err.Error(), "group 1, group 2, group 3, the metadata group") {
		t.Fatalf("removing node2 of two nodes: %v, want a conflict naming the groups", err)
	}
	for g := base.GroupID(1); g <= 3; g++ {
		if v := c.GroupStatus(0, g).Voters; len(v) != 2 {
			t.Fatalf("after a refused removal, group %d has voters %v", g, v)
		}
	}
	// Forced, it goes through, and the last node serves alone.
	if rm, err := c.Members[0].Node.RemoveNode(ctx(), "node2", raftnode.RemoveOptions{Force: true}); err != nil || rm.Draining {
		t.Fatalf("forced removal of node2: %+v, %v", rm, err)
	}
	c.Eventually("node2 gone from every group", 20*time.Second, func() error {
		for g := base.GroupID(1); g <= 3; g++ {
			if v := c.GroupStatus(0, g).Voters; len(v) != 1 {
				return fmt.Errorf("group %d voters %v", g, v)
			}
		}
		return nil
	})
	mustPut(t, c.Members[0].Node, "alone", "ok")
}

// A write refused as unavailable was not applied; one reported as unknown
// may or may not have been. Deadlines that expire while writes queue for
// the proposer exercise both.
func TestExpiredWritesKeepTheirPromise(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Nodes: 1, Groups: 1})
	n := c.Members[0].Node
	var unavailable, unknown []string
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("expired/%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5)*100*time.Microsecond)
		_, _, err := n.Put(ctx, []byte(key), []byte("v"), raftnode.WriteOptions{})
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, base.ErrUnavailable):
			unavailable = append(unavailable, key)
		case errors.Is(err, base.ErrOutcomeUnknown), errors.Is(err, base.ErrNoLeader):
			unknown = append(unknown, key)
		default:
			t.Fatalf("Put(%q): unexpected error %v", key, err)
		}
	}
	if len(unavailable) == 0 {
		t.Fatal("no write was refused before proposal, though a fifth had already expired: the test checked nothing")
	}
	for _, key := range unavailable {
		if _, err := n.Get(raftnodetest.Ctx(t, 5*time.Second), []byte(key), protocol.Linearizable); !errors.Is(err, base.ErrNotFound) {
			t.Fatalf("Put(%q) was reported unavailable (not applied) but Get = %v", key, err)
		}
	}
	t.Logf("%d writes refused before proposal, %d with unknown outcome", len(unavailable), len(unknown))
}

func TestVerifyComparesReplicasAtOneIndex(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{})
	for i := 0; i < 90; i++ {
		mustPut(t, c.Members[i%3].Node, fmt.Sprintf("v/%d", i), fmt.Sprintf("%d", i))
	}
	// Verification runs while writes continue: the roots are still taken at
	// one index on every replica.
	ctx := raftnodetest.Ctx(t, 20*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 30; i++ {
			c.Members[1].Node.Put(ctx, []byte(fmt.Sprintf("during/%d", i)), []byte("x"), raftnode.WriteOptions{})
		}
	}()
	vs, err := c.Members[2].Node.VerifyAll(ctx, verify.Options{})
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 {
		t.Fatalf("verified %d groups, want 3", len(vs))
	}
	for _, v := range vs {
		if !v.Agree || len(v.Replicas) != 3 || v.Root == "" {
			t.Fatalf("group %d: %+v", v.Group, v)
		}
		for _, r := range v.Replicas {
			if r.Index != v.Index || r.Root != v.Root {
				t.Fatalf("group %d: replica %s at %d root %s, leader at %d root %s", v.Group, r.Node, r.Index, r.Root, v.Index, v.Root)
			}
		}
	}
	// Two verifications without writes in between see the same root at
	// different indexes.
	a, err := c.Members[0].Node.Verify(ctx, 1, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Members[0].Node.Verify(ctx, 1, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Root != b.Root || b.Index <= a.Index {
		t.Fatalf("idle group: roots %s@%d then %s@%d", a.Root, a.Index, b.Root, b.Index)
	}
	res, err := c.Members[0].Node.SnapshotAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for _, r := range res {
		if r.Taken {
			taken++
		}
	}
	if taken == 0 {
		t.Fatalf("forced snapshot took nothing: %+v", res)
	}
}

// A joining node is a learner of the metadata group until it has caught
// up: one that joins and then lags (here its metadata replica applies
// nothing until the test ends) and is cut off never counts in the quorum,
// so losing it and one
// original voter leaves two of three voters, which still commit. Were it a
// voter at once, two of four could not.
func TestJoinerIsALearnerUntilCaughtUp(t *testing.T) {
	release := make(chan struct{})
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 2, Configure: func(cfg *raftnode.Config) {
		if cfg.ID == "node4" {
			cfg.Knobs.OnMetaApply = func(uint64) { <-release }
		}
	}})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the cluster stops
	lagger := c.StartJoining(0)
	metaSuffrage := func(id base.NodeID) string {
		st := c.Members[0].Node.Status().Meta
		switch {
		case slices.Contains(st.Voters, id):
			return "voter"
		case slices.Contains(st.Nonvoters, id):
			return "nonvoter"
		}
		return "absent"
	}
	c.Eventually("node4 admitted to the metadata group", 20*time.Second, func() error {
		if _, ok := c.Members[0].Node.Layout().Node("node4"); !ok || metaSuffrage("node4") == "absent" {
			return fmt.Errorf("node4 is %s", metaSuffrage("node4"))
		}
		return nil
	})
	if s := metaSuffrage("node4"); s != "nonvoter" {
		t.Fatalf("node4 joined the metadata group as a %s, want a non-voter until it catches up", s)
	}
	c.Partition(lagger)
	c.Kill(2)
	c.Eventually("a metadata write with node3 down and node4 cut off", 30*time.Second, func() error {
		return c.Members[0].Node.DrainNode(raftnodetest.Ctx(t, 5*time.Second), "node2", false)
	})
	if s := metaSuffrage("node4"); s != "nonvoter" {
		t.Fatalf("node4, cut off and behind, became a %s", s)
	}
}

// A scan that reaches the Raft port answers a bounded page whatever it
// asks for, says when there is more, and an unpaged scan (from an earlier
// release) past its bound is refused rather than cut short.
func TestScansAreBoundedWhateverTheyAsk(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 1})
	for i := 0; i < 40; i++ {
		mustPut(t, c.Members[i%3].Node, fmt.Sprintf("s/%02d", i), strings.Repeat("v", 100))
	}
	c.WaitConverged()
	defer raftnode.SetScanBounds(2000, 3000)()
	n := c.Members[0].Node
	scan := func(maxBytes, limit int) protocol.BatchResult {
		t.Helper()
		r := n.ServeBatch(raftnodetest.Ctx(t, 10*time.Second), protocol.Batch{Requests: []protocol.BatchItem{{DeadlineMS: 5000,
			Request: protocol.Request{Op: "scan", Group: 1, Prefix: []byte("s/"), Consistency: protocol.Stale, MaxBytes: maxBytes, Limit: limit}}}})
		return r.Results[0]
	}
	for _, ask := range []int{500, 1 << 40} {
		res := scan(ask, 0)
		if res.Error != nil {
			t.Fatalf("max_bytes %d: %v", ask, res.Error)
		}
		got, bound := res.Response.Entries, min(ask, 2000)
		size := 0
		for _, e := range got[:len(got)-1] {
			size += len(e.Key) + len(e.Value) + 64
		}
		if !res.Response.More || len(got) == 0 || len(got) == 40 || size >= bound {
			t.Fatalf("max_bytes %d: %d entries (%d bytes before the last), more %v; want a page under %d bytes and more", ask, len(got), size, res.Response.More, bound)
		}
	}
	if res := scan(0, 0); res.Error == nil || res.Error.Code != "bad_request" {
		t.Fatalf("an unpaged scan of 40 keys over a bound of 3000 bytes: %+v, want bad_request", res)
	}
	if res := scan(0, 10); res.Error != nil || len(res.Response.Entries) != 10 {
		t.Fatalf("an unpaged scan of 10 keys within the bound: %+v", res)
	}
}
