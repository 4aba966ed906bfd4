package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// After mass deletes the state file keeps its size, but a checkpoint
// carries the live data only: a fraction of the file, restoring to the
// same keys, index and Merkle root; and no temporary file stays behind.
func TestCheckpointAfterDeletesCarriesLiveDataOnly(t *testing.T) {
	s := mustOpenShortHistory(t)
	value := string(bytes.Repeat([]byte("v"), 8<<10))
	index := uint64(0)
	for i := 0; i < 2000; i++ {
		index++
		mustApply(t, s, index, put(fmt.Sprintf("k%05d", i), value))
	}
	for i := 0; i < 2000; i++ {
		if i%20 == 0 {
			continue // one in twenty stays
		}
		index++
		mustApply(t, s, index, del(fmt.Sprintf("k%05d", i)))
	}

	file := s.FileSize()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Compact(); err != nil {
		t.Fatal(err)
	}
	h := snap.Header()
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if uint64(n) != h.Size {
		t.Fatalf("wrote an image of %d bytes, the header says %d", n, h.Size)
	}
	live := int64(100 * (8<<10 + 6))
	if int64(h.Size) > 2*live+1<<20 || int64(h.Size)*4 > file {
		t.Fatalf("checkpoint image of %d bytes for %d live bytes in a %d-byte file", h.Size, live, file)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.path), "compact-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	dst := mustOpen(t)
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restoring the compacted checkpoint: %v", err)
	}
	if dst.AppliedIndex() != index || dst.KeyCount() != 100 || dst.Root().Hash != s.Root().Hash {
		t.Fatalf("restored: index %d keys %d root %x; want %d, 100, %x", dst.AppliedIndex(), dst.KeyCount(), dst.Root().Hash, index, s.Root().Hash)
	}
	wantValue(t, dst, "k00020", value, 21)
	if fi, err := os.Stat(dst.path); err != nil || fi.Size()*4 > file {
		t.Fatalf("restored state file: %v, %v bytes", err, fi.Size())
	}
}

// CompactFile gives the space of deleted data back to the disk, keeps the
// data, the applied index and the root, and waits its turn while a
// snapshot is open.
func TestCompactFileGivesSpaceBack(t *testing.T) {
	s := mustOpenShortHistory(t)
	value := string(bytes.Repeat([]byte("v"), 16<<10))
	index := uint64(0)
	for i := 0; i < 3000; i++ {
		index++
		mustApply(t, s, index, put(fmt.Sprintf("k%05d", i), value))
	}
	for i := 0; i < 3000; i++ {
		if i%30 != 0 {
			index++
			mustApply(t, s, index, del(fmt.Sprintf("k%05d", i)))
		}
	}
	root, keys := s.Root().Hash, s.KeyCount()
	if !s.WantsCompaction() {
		t.Fatalf("a %d-byte file holding %d keys does not want compaction", s.FileSize(), keys)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CompactFile(); !errors.Is(err, ErrCompactionBusy) {
		t.Fatalf("CompactFile with a snapshot open = %v, want ErrCompactionBusy", err)
	}
	snap.Release()
	before, after, err := s.CompactFile()
	if err != nil {
		t.Fatal(err)
	}
	if after*4 > before || after != s.FileSize() {
		t.Fatalf("compaction took the file from %d to %d bytes (now %d)", before, after, s.FileSize())
	}
	if s.AppliedIndex() != index || s.KeyCount() != keys || s.Root().Hash != root {
		t.Fatalf("after compaction: index %d keys %d root %x; want %d %d %x", s.AppliedIndex(), s.KeyCount(), s.Root().Hash, index, keys, root)
	}
	wantValue(t, s, "k00030", value, 31)
	index++
	mustApply(t, s, index, put("after", "x"))
	wantValue(t, s, "after", "x", index)
	if s.WantsCompaction() {
		t.Fatal("a compacted file still wants compaction")
	}
}

// A crash can leave a compacted image (written while a snapshot is sent),
// a compaction or a restore half done: Open removes them, and nothing else.
func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	left := []string{filepath.Join(dir, "compact-123.db"), path + ".compact", path + ".restore"}
	kept := filepath.Join(dir, "repair-1.ckpt")
	for _, p := range append(left, kept) {
		if err := os.WriteFile(p, []byte("half written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(path, Options{Group: 1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range left {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there after Open (%v)", p, err)
		}
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("Open removed %s, which is not its own: %v", kept, err)
	}
}

// A marker of unsynced writes from this boot (an earlier release's process
// stopped, the machine did not) is settled by a store that syncs: the file
// is synced and the marker removed. One from another boot means a tear.
func TestOpenSettlesOrRefusesAMarker(t *testing.T) {
	boot, err := currentBootID()
	if err != nil || boot == "" {
		t.Skip("no boot id on this system: markers are never written")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{Group: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(path+".unsynced", []byte(boot+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{Group: 1}); err != nil {
		t.Fatalf("a marker of this boot: %v", err)
	}
	s.Close()
	if _, err := os.Stat(path + ".unsynced"); !os.IsNotExist(err) {
		t.Fatalf("the marker of this boot is still there (%v)", err)
	}
	if err := os.WriteFile(path+".unsynced", []byte("another-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Group: 1}); !errors.Is(err, ErrTorn) {
		t.Fatalf("a marker of another boot: %v, want ErrTorn", err)
	}
}
