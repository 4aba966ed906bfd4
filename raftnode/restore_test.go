package raftnode_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
)

// TestRestoreIsAllOrNothingAndOneAtATime restores a backup over live data
// and fails it after the first group was installed: every group is put
// back as it was, the lock is released and writes go on. While the first
// restore holds the lock, a second, from another node, gets a conflict.
func TestRestoreIsAllOrNothingAndOneAtATime(t *testing.T) {
	var fail func(g base.GroupID) error
	c := raftnodetest.Start(t, raftnodetest.Options{Groups: 3, Configure: func(cfg *raftnode.Config) {
		cfg.Knobs.OnRestoreInstall = func(g base.GroupID) error {
			if fail != nil {
				return fail(g)
			}
			return nil
		}
	}})
	n := c.Members[0].Node
	ctx := raftnodetest.Ctx(t, 60*time.Second)
	for i := 0; i < 300; i++ {
		if _, _, err := n.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte("backed-up"), raftnode.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var archive bytes.Buffer
	if _, err := n.Backup(ctx, t.TempDir(), &archive); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if _, _, err := n.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte("live"), raftnode.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := listAll(t, n)

	var second error
	installs := 0
	fail = func(g base.GroupID) error {
		installs++
		if installs == 1 {
			_, second = c.Members[1].Node.Restore(ctx, t.TempDir(), bytes.NewReader(archive.Bytes()), backup.Options{Force: true})
			return nil
		}
		return errors.New("injected failure")
	}
	rep, err := n.Restore(ctx, t.TempDir(), bytes.NewReader(archive.Bytes()), backup.Options{Force: true})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("put back as they were")) {
		t.Fatalf("a restore failing after its first group: %v (%+v)", err, rep)
	}
	if !errors.Is(second, base.ErrConflict) {
		t.Fatalf("a second restore while one runs: %v, want a conflict", second)
	}
	if installs < 2 {
		t.Fatalf("the failure was injected before any group was installed (%d installs)", installs)
	}
	if after := listAll(t, n); after != before {
		t.Fatalf("after the failed restore the cluster holds\n%s\nnot, as before,\n%s", after, before)
	}
	if l := n.Layout(); l.Restore != nil {
		t.Fatalf("the restore lock is still held: %+v", l.Restore)
	}
	if _, _, err := n.Put(raftnodetest.Ctx(t, 10*time.Second), []byte("k000"), []byte("after"), raftnode.WriteOptions{}); err != nil {
		t.Fatalf("a write after the failed restore: %v", err)
	}

	// Without a failure the same restore succeeds, and writes go on.
	fail = nil
	rep, err = c.Members[2].Node.Restore(ctx, t.TempDir(), bytes.NewReader(archive.Bytes()), backup.Options{Force: true})
	if err != nil || !rep.Identical {
		t.Fatalf("restore: %+v, %v", rep, err)
	}
	if got := listAll(t, n); !bytes.Contains([]byte(got), []byte("k000=backed-up")) || bytes.Contains([]byte(got), []byte("live")) {
		t.Fatalf("after the restore:\n%s", got)
	}
	if _, _, err := n.Put(raftnodetest.Ctx(t, 10*time.Second), []byte("k001"), []byte("after"), raftnode.WriteOptions{}); err != nil {
		t.Fatalf("a write after the restore: %v", err)
	}
}

func listAll(t *testing.T, n *raftnode.Node) string {
	t.Helper()
	kvs, err := n.List(raftnodetest.Ctx(t, 10*time.Second), raftnode.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s\n", kv.Key, kv.Value)
	}
	return b.String()
}
