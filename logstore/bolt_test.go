package logstore

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openTestLog(t *testing.T, path string) *Bolt {
	t.Helper()
	b, err := OpenBolt(raftboltdb.Options{Path: path}, 4096, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(err error) { t.Errorf("fatal: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The trailing entries kept hold at most the byte limit, whether their
// sizes were seen being written or must be read back after a restart; a
// truncation that leaves the file mostly free rewrites it, keeping the
// remaining entries and the stable store's keys.
func TestBoltLogBoundsAndCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	b := openTestLog(t, path)
	const entries, size = 2000, 10 << 10
	data := bytes.Repeat([]byte{7}, size)
	for i := 1; i <= entries; i += 100 {
		batch := make([]*raft.Log, 100)
		for j := range batch {
			batch[j] = &raft.Log{Index: uint64(i + j), Term: 1, Type: raft.LogCommand, Data: data}
		}
		if err := b.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	one := int64(EntrySize(&raft.Log{Data: data}))
	if n := b.TrailingWithin(10*one, 4096); n != 10 {
		t.Fatalf("entries within 10 entries' bytes: %d", n)
	}
	if n := b.TrailingWithin(1, 4096); n != 1 {
		t.Fatalf("entries within 1 byte: %d, want at least one", n)
	}
	if n := b.TrailingWithin(1<<40, 50); n != 50 {
		t.Fatalf("entries within a huge limit: %d, want the count bound 50", n)
	}
	b.Close()

	b = openTestLog(t, path)
	defer b.Close()
	if n := b.TrailingWithin(10*one+one/2, 4096); n != 10 {
		t.Fatalf("after a restart, entries within 10.5 entries' bytes: %d", n)
	}
	before, _ := os.Stat(path)
	if err := b.DeleteRange(1, entries-10); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if after.Size()*4 > before.Size() {
		t.Fatalf("log file %d bytes after truncating all but 10 entries, %d before: not rewritten", after.Size(), before.Size())
	}
	first, _ := b.FirstIndex()
	last, _ := b.LastIndex()
	if first != entries-9 || last != entries {
		t.Fatalf("entries %d..%d after the rewrite, want %d..%d", first, last, entries-9, entries)
	}
	var l raft.Log
	if err := b.GetLog(entries-5, &l); err != nil || !bytes.Equal(l.Data, data) {
		t.Fatalf("entry after the rewrite: %v", err)
	}
	if v, err := b.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
		t.Fatalf("stable store after the rewrite: %d, %v", v, err)
	}
	if err := b.StoreLogs([]*raft.Log{{Index: entries + 1, Term: 2, Type: raft.LogCommand, Data: data}}); err != nil {
		t.Fatalf("append after the rewrite: %v", err)
	}
}
