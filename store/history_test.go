package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func mustChanges(t *testing.T, s *Store, o ChangesOptions) ChangesPage {
	t.Helper()
	p, err := s.Changes(o)
	if err != nil {
		t.Fatalf("Changes(%+v): %v", o, err)
	}
	return p
}

// describe renders changes as "seq:put key=value@index/raft" lines.
func describe(cs []Change) []string {
	var out []string
	for _, c := range cs {
		if c.Delete {
			out = append(out, fmt.Sprintf("%d:del %s@%d/%d", c.Seq, c.Key, c.Index, c.RaftIndex))
		} else {
			out = append(out, fmt.Sprintf("%d:put %s=%s@%d/%d", c.Seq, c.Key, c.Value, c.Index, c.RaftIndex))
		}
	}
	return out
}

func wantChanges(t *testing.T, got []Change, want ...string) {
	t.Helper()
	if g := describe(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("changes:\n got %q\nwant %q", g, want)
	}
}

// Every put and delete that changed the store is recorded once, in
// order, with its value and indexes; a failed CAS, a delete of an absent
// key, a replayed entry and a command that does not decode are not.
func TestHistoryRecordsWhatChanged(t *testing.T) {
	s := mustOpen(t)
	mustApply(t, s, 1, put("a", "1"))
	mustApply(t, s, 2, cas("a", "x", 7)) // fails
	mustApply(t, s, 3, del("nope"))      // absent
	mustApply(t, s, 4, put("b", "2"))
	mustApply(t, s, 4, put("b", "replayed"))
	mustApply(t, s, 5, []byte{0xff, 0})
	mustApply(t, s, 6, del("a"))
	batch := EncodeBatch([][]byte{put("c", "3"), cas("d", "4", 0)})
	mustApply(t, s, 7, batch)
	p := mustChanges(t, s, ChangesOptions{})
	wantChanges(t, p.Changes, "1:put a=1@1/1", "2:put b=2@4/4", "3:del a@6/6", "4:put c=3@7/7", "5:put d=4@7/7")
	if p.First != 1 || p.Last != 5 || p.Next != 5 || s.ChangeSeq() != 5 {
		t.Fatalf("page first %d last %d next %d, seq %d; want 1, 5, 5, 5", p.First, p.Last, p.Next, s.ChangeSeq())
	}
	// From a position, with a limit, and under a prefix.
	p = mustChanges(t, s, ChangesOptions{After: 2, Limit: 1})
	wantChanges(t, p.Changes, "3:del a@6/6")
	if p.Next != 3 {
		t.Fatalf("next %d after a page of one from 2, want 3", p.Next)
	}
	p = mustChanges(t, s, ChangesOptions{Prefix: []byte("b")})
	wantChanges(t, p.Changes, "2:put b=2@4/4")
	if p.Next != 5 {
		t.Fatalf("a prefix read looked up to %d, want 5", p.Next)
	}
	// At the newest: nothing, and no error.
	p = mustChanges(t, s, ChangesOptions{After: 5})
	if len(p.Changes) != 0 || p.Next != 5 {
		t.Fatalf("read at the newest: %q, next %d", describe(p.Changes), p.Next)
	}
}

// The history survives a restart, travels in a checkpoint, and keeps its
// numbering in a store restored from one.
func TestHistoryIsPartOfTheState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := Open(path, Options{Group: 1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 1, put("k", "v1"))
	mustApply(t, s, 2, put("k", "v2"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{Group: 1, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustApply(t, s, 3, del("k"))
	wantChanges(t, mustChanges(t, s, ChangesOptions{}).Changes, "1:put k=v1@1/1", "2:put k=v2@2/2", "3:del k@3/3")

	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := mustOpen(t)
	if err := dst.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	mustApply(t, dst, 4, put("k", "v4"))
	wantChanges(t, mustChanges(t, dst, ChangesOptions{After: 2}).Changes, "3:del k@3/3", "4:put k=v4@4/4")
}

// The window keeps the newest HistoryEntries changes and at most
// HistoryBytes of them; a position behind it, or past the newest change,
// is refused with the oldest change kept.
func TestHistoryWindow(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Group: 1, NoSync: true, HistoryEntries: 3, HistoryBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 5; i++ {
		mustApply(t, s, uint64(i), put("k", fmt.Sprint(i)))
	}
	p := mustChanges(t, s, ChangesOptions{After: 2})
	wantChanges(t, p.Changes, "3:put k=3@3/3", "4:put k=4@4/4", "5:put k=5@5/5")
	if p.First != 3 {
		t.Fatalf("first %d, want 3", p.First)
	}
	var ce *CompactedError
	if _, err := s.Changes(ChangesOptions{After: 1}); !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.First != 3 || ce.Ahead {
		t.Fatalf("a position behind the window: %v, want compacted with first 3", err)
	}
	if _, err := s.Changes(ChangesOptions{After: 6}); !errors.As(err, &ce) || !ce.Ahead || ce.Last != 5 {
		t.Fatalf("a position past the newest change: %v, want ahead of 5", err)
	}
	// A large value pushes out all but itself.
	mustApply(t, s, 6, put("big", string(bytes.Repeat([]byte("x"), 2<<10))))
	p = mustChanges(t, s, ChangesOptions{After: 5})
	if len(p.Changes) != 1 || p.First != 6 || string(p.Changes[0].Key) != "big" {
		t.Fatalf("after a value over the byte bound: %q, first %d; want only it", describe(p.Changes), p.First)
	}
	mustApply(t, s, 7, put("k", "7"))
	if p = mustChanges(t, s, ChangesOptions{After: 6}); p.First != 7 {
		t.Fatalf("first %d once a small change followed the large one, want 7", p.First)
	}
	// A read bounded in records looks that far, matching or not.
	for i := 8; i <= 10; i++ {
		mustApply(t, s, uint64(i), put("other", "o"))
	}
	p = mustChanges(t, s, ChangesOptions{After: 7, Prefix: []byte("k"), MaxScan: 2})
	if len(p.Changes) != 0 || p.Next != 9 {
		t.Fatalf("a scan of 2 records for a prefix none has: %q, next %d; want none, 9", describe(p.Changes), p.Next)
	}
}

// Moving a range is not a change: neither its ingest in the destination
// nor its drop in the source is recorded, and the destination's changes
// to a moved key come after those of the source in index.
func TestHistoryLeavesMovesOut(t *testing.T) {
	src, dst := openMoving(t, t.TempDir()), openMoving(t, t.TempDir())
	key := "moved"
	for i := 0; !inLow(key); i++ {
		key = fmt.Sprintf("moved%d", i)
	}
	mustApply(t, src, 1, put(key, "a"))
	if r := mustApply(t, src, 2, Moving{Op: OpFence, Ranges: lowHalf}.Encode()); r.ChangeSeq != 1 || r.IndexFloor != 2 {
		t.Fatalf("the fence reports the history at %d and the floor %d, want 1 and 2", r.ChangeSeq, r.IndexFloor)
	}
	e, err := src.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, dst, 1, Moving{Op: OpIngest, Ranges: lowHalf, Entries: []MovedEntry{{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex}}}.Encode())
	unfence := Moving{Op: OpUnfence, Ranges: lowHalf, Source: 7, SourceSeq: 2, SourceFloor: 50}
	if back, err := DecodeMoving(unfence.Encode()); err != nil || back.Source != 7 || back.SourceSeq != 2 || back.SourceFloor != 50 {
		t.Fatalf("unfence with a source decodes to %+v, %v", back, err)
	}
	mustApply(t, dst, 2, unfence.Encode())
	mustApply(t, src, 3, Moving{Op: OpDrop, Ranges: lowHalf, Limit: 10}.Encode())
	mustApply(t, dst, 3, put(key, "b"))
	wantChanges(t, mustChanges(t, src, ChangesOptions{}).Changes, "1:put "+key+"=a@1/1")
	// The destination's history: the takeover, under any prefix, then
	// the put.
	got := mustChanges(t, dst, ChangesOptions{Prefix: []byte("nothing-")})
	if len(got.Changes) != 1 || got.Changes[0].Takeover == nil || *got.Changes[0].Takeover != (Takeover{From: 7, Seq: 2}) || got.Changes[0].Seq != 1 {
		t.Fatalf("destination history under another prefix: %+v, want the takeover from 7 at 2", got.Changes)
	}
	got = mustChanges(t, dst, ChangesOptions{After: 1})
	if len(got.Changes) != 1 || string(got.Changes[0].Value) != "b" || got.Changes[0].Index <= 50 || got.Changes[0].RaftIndex != 3 {
		t.Fatalf("destination history %q, want the put of b, at an index above the source's floor, 50", describe(got.Changes))
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add(encodeChange(false, []byte("k"), []byte("v"), 7, 3), []byte(""))
	f.Add(encodeChange(true, []byte("a/b"), nil, 1, 1), []byte("a/"))
	f.Add([]byte{2, 1, 1, 5, 'k'}, []byte("x"))
	f.Add([]byte{3, 2, 9}, []byte("x"))
	f.Fuzz(func(t *testing.T, b, prefix []byte) {
		ch, err := decodeChange(b, prefix)
		if err != nil {
			return
		}
		if ch.Takeover != nil {
			if ch.Key != nil || ch.Takeover.From == 0 {
				t.Fatalf("decoded takeover %+v", ch)
			}
			return
		}
		if !bytes.HasPrefix(ch.Key, prefix) || len(ch.Key) == 0 || (ch.Delete && ch.Value != nil) {
			t.Fatalf("decoded %+v under prefix %q", ch, prefix)
		}
		again, err := decodeChange(encodeChange(ch.Delete, ch.Key, ch.Value, ch.Index, ch.RaftIndex), prefix)
		if err != nil || !bytes.Equal(again.Key, ch.Key) || !bytes.Equal(again.Value, ch.Value) || again.Index != ch.Index || again.RaftIndex != ch.RaftIndex {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", ch, again, err)
		}
	})
}

// FuzzApplyHistory applies arbitrary entries (puts, deletes, batches,
// moving commands, garbage) and holds the history to what they did:
// numbered without a gap, one record per change the results report, each
// put's record the value the key then held.
func FuzzApplyHistory(f *testing.F) {
	f.Add([]byte{1, 0, 1, 'a', 'x', 0xff, 2, 0, 1, 'a'})
	f.Add(append(EncodeBatch([][]byte{put("a", "1"), del("a")}), 0xff))
	f.Add(Moving{Op: OpUnfence, Ranges: lowHalf, Source: 3, SourceSeq: 1}.Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Group: 1, NoSync: true, KeyHash: testHash, HistoryEntries: 50})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// Entries are separated by 0xff; a few known commands are
		// mixed in so that keys get changed at all.
		var entries [][]byte
		for _, e := range bytes.Split(data, []byte{0xff}) {
			entries = append(entries, e, put(fmt.Sprintf("k%d", len(e)%4), string(e)))
		}
		changes := 0
		for i, e := range entries {
			r, err := s.Apply(uint64(i+1), e)
			if err != nil {
				t.Fatal(err)
			}
			if IsMoving(e) {
				// Only a destination's unfence naming its source is
				// recorded (a takeover); moving keys is not a change.
				if m, err := DecodeMoving(e); err == nil && r.Err == nil && m.Op == OpUnfence && m.Source != 0 {
					changes++
				}
				continue
			}
			for _, b := range append([]Result{r}, r.Batch...) {
				if b.Applied {
					changes++ // a put or delete that changed a key
				}
			}
		}
		if s.ChangeSeq() != uint64(changes) {
			t.Fatalf("%d records for %d changes", s.ChangeSeq(), changes)
		}
		first, last := s.HistoryBounds()
		p, err := s.Changes(ChangesOptions{After: first - 1, MaxScan: 100})
		if err != nil {
			t.Fatal(err)
		}
		if last != s.ChangeSeq() || (last > 0 && (len(p.Changes) != int(last-first+1) || len(p.Changes) > 50)) {
			t.Fatalf("history %d..%d holds %d records", first, last, len(p.Changes))
		}
		for i, ch := range p.Changes {
			if ch.Seq != first+uint64(i) {
				t.Fatalf("record %d numbered %d, want %d", i, ch.Seq, first+uint64(i))
			}
		}
	})
}

// By default the history's bytes follow the live data: a quarter of it,
// at least historyFloor; so overwriting a small store's keys many times
// leaves the file about the size of its data.
func TestHistoryBytesFollowTheLiveData(t *testing.T) {
	s := mustOpen(t)
	value := string(bytes.Repeat([]byte("v"), 64<<10))
	index := uint64(0)
	for round := 0; round < 10; round++ {
		for k := 0; k < 64; k++ { // 4 MiB of live data
			index++
			mustApply(t, s, index, put(fmt.Sprintf("k%02d", k), value))
		}
	}
	live := s.live.Load()
	if live < 4<<20 || live > 4<<20+64*100 {
		t.Fatalf("live bytes %d for 64 keys of 64 KiB", live)
	}
	if h := s.histBytes.Load(); h > live/historyShare || h < live/historyShare-(64<<10+64) {
		t.Fatalf("history of %d bytes for %d live, want about a quarter", h, live)
	}
	// Deletes shrink the live data, and the history with the next write.
	for k := 1; k < 64; k++ {
		index++
		mustApply(t, s, index, del(fmt.Sprintf("k%02d", k)))
	}
	index++
	mustApply(t, s, index, put("k00", value))
	if h := s.histBytes.Load(); h > historyFloor {
		t.Fatalf("history of %d bytes once the live data is 64 KiB, want at most the floor %d", h, historyFloor)
	}
	// The count survives a restart, and is made for a state file of an
	// earlier release, which had none.
	path, before := s.Path(), s.live.Load()
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyLiveBytes) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s2, err := Open(path, Options{Group: 1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.live.Load(); got != before {
		t.Fatalf("live bytes recounted as %d, were %d", got, before)
	}
}
