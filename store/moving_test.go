package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// testHash places keys in the hash space; any fixed function will do.
func testHash(k []byte) uint64 {
	h := fnv.New64a()
	h.Write(k)
	return h.Sum64()
}

func openMoving(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(dir, "state.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20, KeyHash: testHash})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lowHalf holds the positions below 2^63.
var lowHalf = []HashRange{{Start: math.MaxUint64, End: 1<<63 - 1}}

func inLow(k string) bool { return testHash([]byte(k)) < 1<<63 }

func checkTree(t *testing.T, s *Store) {
	t.Helper()
	root := s.Root()
	err := s.db.View(func(tx *bolt.Tx) error {
		built, err := buildTree(tx, root.Depth)
		if err == nil && built.Root() != root.Hash {
			err = fmt.Errorf("maintained root %x, built from entries %x", root.Hash, built.Root())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A fence refuses puts and deletes of keys in its ranges, and only those,
// survives a reopen, and lifts with an unfence.
func TestFenceRefusesWritesInItsRanges(t *testing.T) {
	dir := t.TempDir()
	s := openMoving(t, dir)
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		if inLow(k) {
			in = k
		} else {
			out = k
		}
	}
	mustApply(t, s, 1, put(in, "before"))
	if r := mustApply(t, s, 2, Moving{Op: OpFence, Ranges: lowHalf}.Encode()); r.Err != nil || !r.Applied {
		t.Fatalf("fence: %+v", r)
	}
	for i, cmd := range [][]byte{put(in, "after"), del(in), EncodeBatch([][]byte{put(out, "x"), put(in, "y")})} {
		r := mustApply(t, s, uint64(3+i), cmd)
		if i < 2 && (!r.Moved || r.Applied) {
			t.Fatalf("write %d to a fenced key: %+v", i, r)
		}
		if i == 2 && (r.Batch[0].Moved || !r.Batch[0].Applied || !r.Batch[1].Moved) {
			t.Fatalf("batch across the fence: %+v", r.Batch)
		}
	}
	if !s.Fenced([]byte(in)) || s.Fenced([]byte(out)) {
		t.Fatal("Fenced disagrees with the fence")
	}
	if e, err := s.Get([]byte(in)); err != nil || string(e.Value) != "before" {
		t.Fatalf("fenced key: %q %v, want its value from before the fence", e.Value, err)
	}
	// A scan leaves the fenced key out: this store no longer answers for it.
	scanned := func() string {
		t.Helper()
		es, err := s.Scan(ScanOptions{Prefix: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, e := range es {
			keys = append(keys, string(e.Key))
		}
		return strings.Join(keys, " ")
	}
	if got := scanned(); got != out {
		t.Fatalf("scan under the fence: %q, want only %q", got, out)
	}
	s.Close()
	s = openMoving(t, dir)
	if !s.Fenced([]byte(in)) {
		t.Fatal("the fence did not survive a reopen")
	}
	mustApply(t, s, 6, Moving{Op: OpUnfence, Ranges: lowHalf}.Encode())
	if r := mustApply(t, s, 7, put(in, "again")); !r.Applied || s.Fenced([]byte(in)) {
		t.Fatalf("write after the unfence: %+v", r)
	}
	if got, want := scanned(), strings.Join(slices.Sorted(slices.Values([]string{in, out})), " "); got != want {
		t.Fatalf("scan after the unfence: %q, want %q", got, want)
	}
	checkTree(t, s)
}

// Moving a range from one store to another: scanned in pages, ingested
// with its indexes, the two digests of the range agree, later writes get
// modify indexes above the ingested ones, and the source drops exactly
// the range, in pages, its tree still matching its entries.
func TestMoveARangeBetweenStores(t *testing.T) {
	src, dst := openMoving(t, t.TempDir()), openMoving(t, t.TempDir())
	want := map[string]string{}
	for i := 1; i <= 400; i++ {
		k, v := fmt.Sprintf("key/%03d", i), fmt.Sprintf("v%d", i)
		mustApply(t, src, uint64(i), put(k, v))
		want[k] = v
	}
	mustApply(t, src, 401, del("key/007"))
	delete(want, "key/007")
	own := "dst/own"
	for i := 0; inLow(own); i++ {
		own = fmt.Sprintf("dst/own%d", i) // a key of its own, outside the range
	}
	mustApply(t, dst, 1, put(own, "mine"))
	var moved []MovedEntry
	var digest [32]byte
	var keys uint64
	var after []byte
	for pages := 0; ; pages++ {
		v, err := src.ScanRanges(lowHalf, after, 50, 0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range v.Entries {
			if !inLow(string(e.Key)) {
				t.Fatalf("scan returned %s, outside the range", e.Key)
			}
			moved = append(moved, MovedEntry{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex})
		}
		for i := range digest {
			digest[i] ^= v.Digest[i]
		}
		keys += v.Keys
		if v.Cursor == nil {
			break
		}
		if pages > 100 {
			t.Fatal("the scan does not end")
		}
		after = v.Cursor
	}
	low := 0
	for k := range want {
		if inLow(k) {
			low++
		}
	}
	if len(moved) != low || keys != uint64(low) {
		t.Fatalf("scanned %d entries (%d counted), the range holds %d", len(moved), keys, low)
	}
	for i := 0; i < len(moved); i += 100 {
		r := mustApply(t, dst, uint64(2+i), Moving{Op: OpIngest, Ranges: lowHalf, Entries: moved[i:min(i+100, len(moved))]}.Encode())
		if r.Err != nil || r.Count != min(100, len(moved)-i) {
			t.Fatalf("ingest: %+v", r)
		}
	}
	// Values only above a modify index: the changes since a first copy.
	part, err := src.ScanRanges(lowHalf, nil, 0, 0, 0, 200)
	if err != nil || part.Digest != digest || part.Keys != keys {
		t.Fatalf("a scan with values above 200 digests %x over %d keys (%v), want %x over %d", part.Digest, part.Keys, err, digest, keys)
	}
	for _, e := range part.Entries {
		if (e.ModifyIndex > 200) != (e.Value != nil) {
			t.Fatalf("%s modified at %d: value %q", e.Key, e.ModifyIndex, e.Value)
		}
	}
	got, err := dst.ScanRanges(lowHalf, nil, 0, 0, 0, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest || got.Keys != keys {
		t.Fatalf("destination digest %x over %d keys, source %x over %d", got.Digest, got.Keys, digest, keys)
	}
	var maxModify uint64
	for _, e := range moved {
		maxModify = max(maxModify, e.ModifyIndex)
		back, err := dst.Get(e.Key)
		if err != nil || !bytes.Equal(back.Value, e.Value) || back.ModifyIndex != e.ModifyIndex || back.CreateIndex != e.CreateIndex {
			t.Fatalf("ingested %s: %+v %v, want %+v", e.Key, back, err, e)
		}
	}
	if r := mustApply(t, dst, 1000, put(own, "again")); r.ModifyIndex <= maxModify {
		t.Fatalf("a write after the ingest got modify index %d, not above the ingested %d", r.ModifyIndex, maxModify)
	}
	// An ingest can also remove a key the source no longer has.
	mustApply(t, dst, 1001, Moving{Op: OpIngest, Ranges: lowHalf, Entries: []MovedEntry{{Key: moved[0].Key, Deleted: true}}}.Encode())
	if _, err := dst.Get(moved[0].Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ingested deletion: %v", err)
	}
	checkTree(t, dst)

	// The source drops the range in pages of at most 30 keys.
	after = nil
	for i := uint64(500); ; i++ {
		r := mustApply(t, src, i, Moving{Op: OpDrop, Ranges: lowHalf, After: after, Limit: 30}.Encode())
		if r.Err != nil || r.Count > 30 {
			t.Fatalf("drop: %+v", r)
		}
		if r.Cursor == nil {
			break
		}
		after = r.Cursor
	}
	for k, v := range want {
		e, err := src.Get([]byte(k))
		switch {
		case inLow(k) && !errors.Is(err, ErrNotFound):
			t.Fatalf("%s survived the drop", k)
		case !inLow(k) && (err != nil || string(e.Value) != v):
			t.Fatalf("%s outside the range: %q %v", k, e.Value, err)
		}
	}
	if src.KeyCount() != uint64(len(want)-low) {
		t.Fatalf("source counts %d keys, holds %d", src.KeyCount(), len(want)-low)
	}
	checkTree(t, src)
}

func TestMovingNeedsAKeyHash(t *testing.T) {
	s := mustOpen(t)
	if r := mustApply(t, s, 1, Moving{Op: OpFence, Ranges: lowHalf}.Encode()); r.Err == nil {
		t.Fatal("a store without a key hash took a fence")
	}
}

func FuzzDecodeMoving(f *testing.F) {
	f.Add(Moving{Op: OpFence, Ranges: lowHalf}.Encode())
	f.Add(Moving{Op: OpIngest, Ranges: lowHalf, Entries: []MovedEntry{{Key: []byte("k"), Value: []byte("v"), CreateIndex: 1, ModifyIndex: 2}, {Key: []byte("d"), Deleted: true}}}.Encode())
	f.Add(Moving{Op: OpDrop, Ranges: lowHalf, After: []byte("a"), Limit: 5}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMoving(b)
		if err != nil {
			return
		}
		again, err := DecodeMoving(m.Encode())
		if err != nil || !bytes.Equal(again.Encode(), m.Encode()) {
			t.Fatalf("%x decodes but does not round-trip: %v", b, err)
		}
		// Applying it never fails with an I/O error or breaks the tree.
		s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{NoSync: true, KeyHash: testHash})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Apply(1, put("a", "b")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(2, b); err != nil {
			t.Fatalf("apply: %v", err)
		}
	})
}

// Fence sets behave as sets of positions: random fences and unfences,
// checked at the ranges' edges against the ranges themselves.
func TestSpanSetIsASetOfPositions(t *testing.T) {
	rng := uint64(88172645463325252)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	var set spanSet
	type op struct {
		r     HashRange
		fence bool
	}
	var ops []op
	var probes []uint64
	for i := 0; i < 200; i++ {
		r := HashRange{Start: next(), End: next()}
		if i%7 == 0 {
			r.End = r.Start + next()%1000 // small ones too
		}
		o := op{r, next()%3 != 0}
		ops = append(ops, o)
		for _, sp := range r.spans() {
			if o.fence {
				set = set.union(sp)
			} else {
				set = set.minus(sp)
			}
		}
		probes = append(probes, r.Start, r.Start+1, r.End, r.End+1, next())
		back, err := decodeSpanSet(set.encode())
		if err != nil || len(back) != len(set) {
			t.Fatalf("step %d: encoding round trip: %v", i, err)
		}
		for _, h := range probes {
			want := false
			for _, o := range ops {
				if o.r.Start == o.r.End || (o.r.Start < o.r.End && h > o.r.Start && h <= o.r.End) || (o.r.Start > o.r.End && (h > o.r.Start || h <= o.r.End)) {
					want = o.fence
				}
			}
			if set.contains(h) != want || back.contains(h) != want {
				t.Fatalf("step %d: position %#x in set = %v, want %v", i, h, set.contains(h), want)
			}
		}
	}
}

// Once a mover of a later term has acted on a store, the commands of an
// earlier one are refused and change nothing, across a reopen too.
func TestStaleMoverIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := openMoving(t, dir)
	key := "k"
	for i := 0; !inLow(key); i++ {
		key = fmt.Sprintf("k%d", i)
	}
	entry := func(v string, modify uint64) []MovedEntry {
		return []MovedEntry{{Key: []byte(key), Value: []byte(v), CreateIndex: 1, ModifyIndex: modify}}
	}
	if r := mustApply(t, s, 1, Moving{Op: OpIngest, Term: 5, Ranges: lowHalf, Entries: entry("new", 10)}.Encode()); r.Err != nil {
		t.Fatal(r.Err)
	}
	s.Close()
	s = openMoving(t, dir)
	for i, m := range []Moving{
		{Op: OpIngest, Term: 4, Ranges: lowHalf, Entries: entry("old", 5)},
		{Op: OpFence, Term: 3, Ranges: lowHalf},
		{Op: OpDrop, Term: 4, Ranges: lowHalf, Limit: 10},
	} {
		if r := mustApply(t, s, uint64(2+i), m.Encode()); !errors.Is(r.Err, ErrStaleMover) || r.Applied {
			t.Fatalf("command %d of a deposed mover: %+v", i, r)
		}
	}
	if e, err := s.Get([]byte(key)); err != nil || string(e.Value) != "new" || s.Fenced([]byte(key)) {
		t.Fatalf("after the deposed mover: %q %v fenced=%v", e.Value, err, s.Fenced([]byte(key)))
	}
	if r := mustApply(t, s, 9, Moving{Op: OpIngest, Term: 5, Ranges: lowHalf, Entries: entry("same term", 11)}.Encode()); r.Err != nil {
		t.Fatalf("the current mover: %v", r.Err)
	}
}
