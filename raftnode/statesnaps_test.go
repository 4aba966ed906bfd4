package raftnode_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
	"github.com/ringkv/ringkv/store"
)

// writeAndSnapshot writes r000..r299 to a one-node, one-group cluster, waits
// for a snapshot past index 100 and writes r300..r319 after it.
func writeAndSnapshot(t *testing.T) (*raftnodetest.Cluster, string) {
	t.Helper()
	c := raftnodetest.Start(t, raftnodetest.Options{Nodes: 1, Groups: 1, SnapshotThreshold: 50, TrailingLogs: 10})
	n := c.Members[0].Node
	for i := 0; i < 300; i++ {
		mustPut(t, n, fmt.Sprintf("r%03d", i), fmt.Sprintf("v%d", i))
	}
	c.Eventually("a snapshot", 20*time.Second, func() error {
		if st := c.GroupStatus(0, 1); st.SnapshotIndex < 100 {
			return fmt.Errorf("snapshot index %d", st.SnapshotIndex)
		}
		return nil
	})
	for i := 300; i < 320; i++ {
		mustPut(t, n, fmt.Sprintf("r%03d", i), fmt.Sprintf("v%d", i))
	}
	return c, filepath.Join(c.Members[0].DataDir, "groups", "1")
}

func checkAll320(t *testing.T, c *raftnodetest.Cluster) {
	t.Helper()
	n := c.Members[0].Node
	kvs, err := n.List(raftnodetest.Ctx(t, 10*time.Second), raftnode.ListOptions{Prefix: []byte("r")})
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 320 {
		t.Fatalf("%d keys, want 320", len(kvs))
	}
	if got := mustGet(t, n, "r319", protocol.Linearizable); got != "v319" {
		t.Fatalf("r319 = %q, want v319", got)
	}
}

// A data group's snapshots hold no copy of its data: the state file,
// synced at every commit, is that copy. So a lost state file cannot be
// rebuilt from the node's own files, and the group must refuse to start
// rather than serve a state that misses committed writes; with the file
// back, it starts and holds everything. A snapshot whose index is past the
// last entry the state machine saw (a leader's no-op) is no reason to
// refuse.
func TestSnapshotsHoldNoCopyAndALostStateFileIsRefused(t *testing.T) {
	c, dir := writeAndSnapshot(t)
	snapBytes := dirBytes(t, filepath.Join(dir, "snapshots"))
	if snapBytes > 16<<10 {
		t.Fatalf("the group's snapshots take %d bytes for 320 keys: they hold a copy of the data", snapBytes)
	}
	// A restart elects a leader; its no-op and the first read's barrier
	// are entries the state machine never sees. A snapshot now ends past
	// the last entry the state file holds.
	last := mustPut(t, c.Members[0].Node, "r319", "v319").RaftIndex
	c.Kill(0)
	c.Restart(0)
	c.WaitReady()
	mustGet(t, c.Members[0].Node, "r000", protocol.Linearizable)
	if _, err := c.Members[0].Node.SnapshotAll(raftnodetest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := c.GroupStatus(0, 1); st.SnapshotIndex <= last {
		t.Fatalf("snapshot index %d, want past the last write's %d", st.SnapshotIndex, last)
	}
	c.Kill(0)
	c.Restart(0)
	c.WaitReady()
	checkAll320(t, c)

	c.Kill(0)
	state := filepath.Join(dir, "state.db")
	if err := os.Rename(state, state+".aside"); err != nil {
		t.Fatal(err)
	}
	n, err := raftnode.New(c.Config(0))
	if err == nil {
		n.Close()
		t.Fatal("a node whose state file is gone started, though its log no longer holds the entries its snapshot covers")
	}
	if !strings.Contains(err.Error(), "behind the snapshot") {
		t.Fatalf("start without the state file: %v, want an error saying it is behind the snapshot", err)
	}
	if err := os.Rename(state+".aside", state); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	c.WaitReady()
	checkAll320(t, c)
}

// A state file torn by a machine crash under an earlier release, which
// deferred the file's syncs and kept a copy of the data in each snapshot,
// is rebuilt from that snapshot and the log after it.
func TestTornStateOfAnEarlierReleaseIsRebuilt(t *testing.T) {
	c, dir := writeAndSnapshot(t)
	c.Kill(0)
	// What an earlier release left: its newest snapshot holds a checkpoint.
	files, err := raft.NewFileSnapshotStore(filepath.Join(dir, "snapshots"), 1, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := files.List()
	if err != nil || len(metas) != 1 || metas[0].Size != raftnode.StateMarkSize {
		t.Fatalf("snapshots before: %v, %v; want one without data", metas, err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	sn, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var ckpt bytes.Buffer
	if _, err := sn.WriteTo(&ckpt); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	st.Close()
	_, trans := raft.NewInmemTransport("")
	m := metas[0]
	sink, err := files.Create(raft.SnapshotVersionMax, m.Index, m.Term, m.Configuration, m.ConfigurationIndex, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(ckpt.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	// The machine went down before the node was upgraded: a torn file and
	// the record of unsynced writes from another boot.
	state := filepath.Join(dir, "state.db")
	if err := os.WriteFile(state, []byte("torn pages"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state+".unsynced", []byte("a-previous-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	c.WaitReady()
	checkAll320(t, c)
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
