package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func mustOpen(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mustOpenShortHistory opens a store whose history keeps 10 changes:
// what a test of the file's size needs, as the default one would keep the
// values of deleted keys.
func mustOpenShortHistory(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20, HistoryEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(key, value string) []byte {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value)}.Encode()
}

func cas(key, value string, idx uint64) []byte {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value), HasCAS: true, CAS: idx}.Encode()
}

func del(key string) []byte { return Command{Op: OpDelete, Key: []byte(key)}.Encode() }

func mustApply(t testing.TB, s *Store, index uint64, cmd []byte) Result {
	t.Helper()
	r, err := s.Apply(index, cmd)
	if err != nil {
		t.Fatalf("Apply(%d): %v", index, err)
	}
	return r
}

func wantValue(t testing.TB, s *Store, key, want string, modify uint64) {
	t.Helper()
	e, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(e.Value) != want || e.ModifyIndex != modify {
		t.Fatalf("Get(%q) = %q@%d, want %q@%d", key, e.Value, e.ModifyIndex, want, modify)
	}
}

func TestPutGetDelete(t *testing.T) {
	s := mustOpen(t)
	r := mustApply(t, s, 5, put("a", "1"))
	if !r.Applied || r.ModifyIndex != 5 || r.Current != 0 {
		t.Errorf("put result %+v", r)
	}
	wantValue(t, s, "a", "1", 5)
	mustApply(t, s, 6, put("a", "2"))
	e, _ := s.Get([]byte("a"))
	if e.CreateIndex != 5 || e.ModifyIndex != 6 {
		t.Errorf("indexes create=%d modify=%d, want 5 and 6", e.CreateIndex, e.ModifyIndex)
	}
	r = mustApply(t, s, 7, del("a"))
	if !r.Applied || r.Current != 6 {
		t.Errorf("delete result %+v", r)
	}
	if _, err := s.Get([]byte("a")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	r = mustApply(t, s, 8, del("a"))
	if r.Applied || !r.NotFound {
		t.Errorf("delete of absent key: %+v", r)
	}
	if s.AppliedIndex() != 8 || s.KeyCount() != 0 {
		t.Errorf("applied=%d keys=%d, want 8 and 0", s.AppliedIndex(), s.KeyCount())
	}
}

func TestCompareAndSwap(t *testing.T) {
	s := mustOpen(t)
	tests := []struct {
		index   uint64
		cmd     []byte
		applied bool
		current uint64
	}{
		{1, cas("k", "v1", 0), true, 0},  // create only if absent
		{2, cas("k", "v2", 0), false, 1}, // now present
		{3, cas("k", "v3", 2), false, 1}, // wrong index
		{4, cas("k", "v4", 1), true, 1},  // right index
		{5, Command{Op: OpDelete, Key: []byte("k"), HasCAS: true, CAS: 1}.Encode(), false, 4},
		{6, Command{Op: OpDelete, Key: []byte("k"), HasCAS: true, CAS: 4}.Encode(), true, 4},
	}
	for _, tt := range tests {
		r := mustApply(t, s, tt.index, tt.cmd)
		if r.Applied != tt.applied || r.CASFailed == tt.applied || r.Current != tt.current {
			t.Errorf("index %d: result %+v, want applied=%v current=%d", tt.index, r, tt.applied, tt.current)
		}
	}
}

func TestReplayedEntriesAreSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 1, cas("k", "first", 0))
	mustApply(t, s, 2, put("k", "second"))
	s.Close()

	// After a restart raft hands the same entries again.
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.AppliedIndex() != 2 {
		t.Fatalf("AppliedIndex after reopen = %d, want 2", s.AppliedIndex())
	}
	rs, err := s.ApplyBatch([]LogEntry{{Index: 1, Data: cas("k", "first", 0)}, {Index: 2, Data: put("k", "second")}, {Index: 3, Data: put("k", "third")}})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].Replayed || !rs[1].Replayed || rs[2].Replayed || !rs[2].Applied {
		t.Errorf("replay results %+v", rs)
	}
	wantValue(t, s, "k", "third", 3)
}

func TestBatchAndBadCommands(t *testing.T) {
	s := mustOpen(t)
	rs, err := s.ApplyBatch([]LogEntry{
		{Index: 10, Data: put("a", "1")},
		{Index: 11, Data: []byte{0xff, 0}},
		{Index: 12, Data: nil}, // configuration entry
		{Index: 13, Data: put("b", "2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rs[1].Err == nil || !errors.Is(rs[1].Err, ErrBadCommand) {
		t.Errorf("bad command result %+v", rs[1])
	}
	if !rs[0].Applied || !rs[3].Applied || s.AppliedIndex() != 13 || s.KeyCount() != 2 {
		t.Errorf("results %+v applied=%d keys=%d", rs, s.AppliedIndex(), s.KeyCount())
	}
}

func TestScan(t *testing.T) {
	s := mustOpen(t)
	keys := []string{"b/2", "a/1", "b/1", "b/3", "c", "b/10"}
	for i, k := range keys {
		mustApply(t, s, uint64(i+1), put(k, "v-"+k))
	}
	tests := []struct {
		opts ScanOptions
		want []string
	}{
		{ScanOptions{Prefix: []byte("b/")}, []string{"b/1", "b/10", "b/2", "b/3"}},
		{ScanOptions{}, []string{"a/1", "b/1", "b/10", "b/2", "b/3", "c"}},
		{ScanOptions{Prefix: []byte("b/"), Limit: 2}, []string{"b/1", "b/10"}},
		{ScanOptions{Prefix: []byte("b/"), After: []byte("b/10")}, []string{"b/2", "b/3"}},
		{ScanOptions{Prefix: []byte("b/"), After: []byte("a")}, []string{"b/1", "b/10", "b/2", "b/3"}},
		{ScanOptions{Prefix: []byte("z")}, nil},
	}
	for _, tt := range tests {
		es, err := s.Scan(tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, string(e.Key))
			if !tt.opts.KeysOnly && string(e.Value) != "v-"+string(e.Key) {
				t.Errorf("value of %q = %q", e.Key, e.Value)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Scan(%+v) = %v, want %v", tt.opts, got, tt.want)
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	src := mustOpen(t)
	for i := 1; i <= 500; i++ {
		mustApply(t, src, uint64(i), put(fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i)))
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot must not leak into it.
	mustApply(t, src, 501, put("late", "x"))
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if h := snap.Header(); h.Index != 500 || h.Keys != 500 || h.Group != 1 {
		t.Errorf("header %+v", h)
	}

	dst := mustOpen(t)
	mustApply(t, dst, 1, put("stale", "must vanish"))
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if dst.AppliedIndex() != 500 || dst.KeyCount() != 500 {
		t.Errorf("after restore applied=%d keys=%d", dst.AppliedIndex(), dst.KeyCount())
	}
	if _, err := dst.Get([]byte("stale")); !errors.Is(err, ErrNotFound) {
		t.Error("restore merged into old state instead of replacing it")
	}
	if _, err := dst.Get([]byte("late")); !errors.Is(err, ErrNotFound) {
		t.Error("snapshot holds a write applied after it was taken")
	}
	wantValue(t, dst, "k0250", "v250", 250)

	// A damaged checkpoint is refused and the state stays as it was.
	bad := append([]byte(nil), buf.Bytes()...)
	bad[len(bad)/2] ^= 0xff
	if err := dst.Restore(bytes.NewReader(bad)); err == nil {
		t.Fatal("Restore accepted a damaged checkpoint")
	}
	wantValue(t, dst, "k0250", "v250", 250)
	if dst.AppliedIndex() != 500 {
		t.Errorf("applied index moved to %d after a refused restore", dst.AppliedIndex())
	}
}

func TestChangedFiresOnApply(t *testing.T) {
	s := mustOpen(t)
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("Changed fired before any apply")
	default:
	}
	mustApply(t, s, 1, put("a", "b"))
	select {
	case <-ch:
	default:
		t.Fatal("Changed did not fire after apply")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(put("key", "value"))
	f.Add(cas("key", "v", 7))
	f.Add(del("key"))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := DecodeCommand(c.Encode())
		if err != nil {
			t.Fatalf("re-decoding an accepted command: %v", err)
		}
		if again.Op != c.Op || !bytes.Equal(again.Key, c.Key) || !bytes.Equal(again.Value, c.Value) || again.HasCAS != c.HasCAS || again.CAS != c.CAS || again.Deep != c.Deep {
			t.Fatalf("round trip changed %+v to %+v", c, again)
		}
	})
}

func TestDeferredSyncDetectsMachineCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	opts := Options{DeferSync: true, MmapSize: 64 << 20}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := currentBootID(); err != nil {
		// Without a boot id the store must fall back to fsync on commit.
		if s.bootID != "" || s.db.NoSync {
			t.Fatal("DeferSync without a boot id skipped fsync")
		}
		s.Close()
		return
	}
	mustApply(t, s, 1, put("k", "v"))
	// A process crash (no Close) on the same boot: the file is trusted.
	s.db.Close()
	s, err = Open(path, opts)
	if err != nil {
		t.Fatalf("reopen on the same boot: %v", err)
	}
	wantValue(t, s, "k", "v", 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A clean Close syncs and clears the marker.
	if _, err := os.Stat(path + ".unsynced"); !os.IsNotExist(err) {
		t.Fatalf("marker after clean close: %v", err)
	}
	// Unsynced writes left by another boot: refuse the file.
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 2, put("k", "w"))
	s.db.Close()
	if err := os.WriteFile(path+".unsynced", []byte("another-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, opts); !errors.Is(err, ErrTorn) {
		t.Fatalf("Open after a machine crash = %v, want ErrTorn", err)
	}
}

func TestMerkleRootTracksEntries(t *testing.T) {
	cmds := []LogEntry{}
	for i := 1; i <= 300; i++ {
		k := fmt.Sprintf("k%03d", i%97)
		var cmd []byte
		switch {
		case i%11 == 0:
			cmd = del(k)
		default:
			cmd = put(k, fmt.Sprintf("v%d", i))
		}
		cmds = append(cmds, LogEntry{Index: uint64(i), Data: cmd})
	}
	// One batch against one entry at a time: same state, same root.
	a, b := mustOpen(t), mustOpen(t)
	if _, err := a.ApplyBatch(cmds); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		mustApply(t, b, c.Index, c.Data)
	}
	ra, rb := a.Root(), b.Root()
	if ra.Hash != rb.Hash || ra.Index != 300 || rb.Index != 300 {
		t.Fatalf("roots %x@%d and %x@%d differ", ra.Hash, ra.Index, rb.Hash, rb.Index)
	}
	// The maintained tree equals one built from the entries.
	err := a.db.View(func(tx *bolt.Tx) error {
		built, err := buildTree(tx, ra.Depth)
		if err != nil {
			return err
		}
		if built.Root() != ra.Hash {
			t.Errorf("maintained root %x, built from entries %x", ra.Hash, built.Root())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Any change moves the root; a write of the same value at a new index too.
	mustApply(t, a, 301, put("k001", "v1"))
	if a.Root().Hash == ra.Hash {
		t.Fatal("root did not move after a write")
	}
	// A reopened store has the same root without rebuilding from the data.
	path := a.Path()
	want := a.Root()
	a.Close()
	again, err := Open(path, Options{NoSync: true, MmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Root() != want {
		t.Fatalf("root after reopen %+v, want %+v", again.Root(), want)
	}
}

func TestRestoreChecksMerkleRoot(t *testing.T) {
	src := mustOpen(t)
	for i := 1; i <= 50; i++ {
		mustApply(t, src, uint64(i), put(fmt.Sprintf("k%d", i), "v"))
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if snap.Header().Root != src.Root().Hash {
		t.Fatal("checkpoint header does not carry the root")
	}
	dst := mustOpen(t)
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if dst.Root() != src.Root() {
		t.Fatalf("restored root %+v, want %+v", dst.Root(), src.Root())
	}
	// A header whose root does not match the entries is refused.
	h := snap.Header()
	h.Root[0] ^= 1
	hb, _ := h.MarshalBinary()
	bad := append(hb, buf.Bytes()[len(hb):]...)
	other := mustOpen(t)
	mustApply(t, other, 1, put("keep", "me"))
	if err := other.Restore(bytes.NewReader(bad)); !errors.Is(err, ErrRestoreMismatch) {
		t.Fatalf("Restore with a wrong root: %v, want ErrRestoreMismatch", err)
	}
	wantValue(t, other, "keep", "me", 1)
}

func TestTallyBy(t *testing.T) {
	s := mustOpen(t)
	for i, kv := range [][2]string{{"a1", "xx"}, {"a2", "yyyy"}, {"b1", "z"}, {"c1", ""}} {
		mustApply(t, s, uint64(i+1), put(kv[0], kv[1]))
	}
	got, err := s.TallyBy(func(k []byte) int {
		switch k[0] {
		case 'a':
			return 0
		case 'b':
			return 1
		}
		return -1 // c: left out
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Tally{{Keys: 2, Bytes: 2 + 2 + 2 + 4}, {Keys: 1, Bytes: 2 + 1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
}

// Skipped keys are left out and do not count towards the limit.
func TestScanSkip(t *testing.T) {
	s := mustOpen(t)
	for i := 1; i <= 10; i++ {
		mustApply(t, s, uint64(i), put(fmt.Sprintf("k%02d", i), "v"))
	}
	es, err := s.Scan(ScanOptions{Prefix: []byte("k"), Limit: 3, Skip: func(k []byte) bool { return k[2]%2 == 1 }})
	if err != nil || len(es) != 3 || string(es[0].Key) != "k02" || string(es[2].Key) != "k06" {
		t.Fatalf("scan skipping odd keys: %v %v", es, err)
	}
}
