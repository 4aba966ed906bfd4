package logstore

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func openKind(t *testing.T, kind, dir string) Store {
	t.Helper()
	s, err := Open(kind, dir, 4096, slog.New(slog.NewTextHandler(io.Discard, nil)), hclog.NewNullLogger(),
		func(err error) { t.Errorf("fatal: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func entries(from, to uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)})
	}
	return out
}

// Both stores keep what raft gives them across a reopen: entries, a
// truncation of the head (after a snapshot) and of the tail (a follower's
// conflicting entries), and the stable store's keys; a new store answers
// raft's first questions (no term, no vote) alike.
func TestStoresKeepWhatRaftWrites(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s := openKind(t, kind, dir)
			if Detect(dir) != kind {
				t.Fatalf("Detect = %q, want %q", Detect(dir), kind)
			}
			// raft reads "not found" (raft-boltdb's answer) as no term.
			if v, err := s.GetUint64([]byte("CurrentTerm")); v != 0 || (err != nil && err.Error() != "not found") {
				t.Fatalf("a new store's term: %d, %v; want 0", v, err)
			}
			if err := s.StoreLogs(entries(1, 500, 100)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(1, 200); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(451, 500); err != nil {
				t.Fatal(err)
			}
			if err := s.StoreLogs(entries(451, 460, 50)); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if err := s.Set([]byte("LastVoteCand"), []byte("node2")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openKind(t, kind, dir)
			defer s.Close()
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			// raft-wal drops whole segments only: the head may keep
			// entries below the truncation.
			if first > 201 || last != 460 {
				t.Fatalf("first %d last %d after reopen, want at most 201 and 460", first, last)
			}
			var l raft.Log
			if err := s.GetLog(460, &l); err != nil || len(l.Data) != 50 {
				t.Fatalf("entry 460: %v, %d bytes; want the rewritten tail", err, len(l.Data))
			}
			if err := s.GetLog(300, &l); err != nil || l.Data[0] != byte(300%256) {
				t.Fatalf("entry 300: %v", err)
			}
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
				t.Fatalf("term %d, %v", v, err)
			}
			if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node2" {
				t.Fatalf("vote %q, %v", v, err)
			}
			// 10 entries of 50+64 bytes, then 23 of 100+64 fit in 5000.
			if n := s.TrailingWithin(5000, 1000); n != 33 {
				t.Errorf("TrailingWithin(5000 B) = %d entries, want 33", n)
			}
		})
	}
}

// A crash in the middle of an append leaves a segment with a torn last
// record: the WAL opens again with every entry written before it, and
// takes appends after them.
func TestWALTornWrite(t *testing.T) {
	dir := t.TempDir()
	s := openKind(t, KindWAL, dir)
	if err := s.StoreLogs(entries(1, 100, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(101, 101, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := lastSegment(t, filepath.Join(dir, "wal"))
	// Cut the file in the middle of entry 101's record: every entry
	// before it takes 100 records of about 1 KiB.
	end := dataEnd(t, seg)
	if err := os.Truncate(seg, end-2500); err != nil {
		t.Fatal(err)
	}
	s = openKind(t, KindWAL, dir)
	defer s.Close()
	last, err := s.LastIndex()
	if err != nil || last != 100 {
		t.Fatalf("last index after a torn append: %d, %v; want 100", last, err)
	}
	var l raft.Log
	for i := uint64(1); i <= 100; i++ {
		if err := s.GetLog(i, &l); err != nil || len(l.Data) != 1000 || l.Data[0] != byte(i) {
			t.Fatalf("entry %d after the torn append: %v", i, err)
		}
	}
	if err := s.StoreLogs(entries(101, 110, 10)); err != nil {
		t.Fatalf("append after the torn record: %v", err)
	}
	if last, _ := s.LastIndex(); last != 110 {
		t.Fatalf("last %d after appending to 110", last)
	}
}

// lastSegment is the newest segment file of a raft-wal directory.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no segment in %s: %v", dir, err)
	}
	sort.Strings(names)
	return names[len(names)-1]
}

// dataEnd is where a preallocated segment's written records end: the
// last non-zero byte, rounded up to raft-wal's 8-byte frame alignment.
func dataEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	if end == 0 {
		t.Fatal(fmt.Errorf("segment %s is empty", path))
	}
	return int64(end)
}
