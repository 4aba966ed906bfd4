package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

func checkpointOf(t *testing.T, s *Store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImageRecomputesTreeAndRebases(t *testing.T) {
	s := mustOpen(t)
	for i := 1; i <= 300; i++ {
		mustApply(t, s, uint64(i), put(fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)))
	}
	mustApply(t, s, 301, del("k007"))
	ck := checkpointOf(t, s)

	img, err := OpenImage(bytes.NewReader(ck), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	sum, err := img.Summarize()
	if err != nil || img.DigestErr != nil {
		t.Fatalf("Summarize: %v, digest %v", err, img.DigestErr)
	}
	if sum.Index != 301 || sum.Counted != 299 || sum.Tree.Root() != s.Root().Hash || sum.Stored.Root() != s.Root().Hash {
		t.Fatalf("summary index %d, %d entries, root %x (stored %x), store root %x", sum.Index, sum.Counted, sum.Tree.Root(), sum.Stored.Root(), s.Root().Hash)
	}

	// Rebased onto a later index: same entries and root, new index, and a
	// store restored from it continues from there.
	var rb bytes.Buffer
	h, err := img.Rebase(5000, 7, &rb)
	if err != nil {
		t.Fatal(err)
	}
	if h.Index != 5000 || h.Term != 7 || h.Root != s.Root().Hash || h.Keys != 299 {
		t.Fatalf("rebased header %+v", h)
	}
	dst := mustOpen(t)
	if err := dst.Restore(&rb); err != nil {
		t.Fatalf("restoring the rebased checkpoint: %v", err)
	}
	if dst.AppliedIndex() != 5000 || dst.Root().Hash != s.Root().Hash {
		t.Fatalf("restored at %d with root %x", dst.AppliedIndex(), dst.Root().Hash)
	}
	wantValue(t, dst, "k250", "v250", 250)
	if r := mustApply(t, dst, 4000, put("k250", "replayed")); !r.Replayed {
		t.Fatal("an entry below the rebased index was applied")
	}
	if _, err := img.Rebase(10, 1, &bytes.Buffer{}); err == nil {
		t.Fatal("rebased below the image's own index")
	}

	// Fenced for a restore: every key refuses writes until an unfence of
	// the restore's mover term, and an older mover cannot lift it.
	var fb bytes.Buffer
	if _, err := img.RebaseFenced(6000, 7, 9, &fb); err != nil {
		t.Fatal(err)
	}
	fd, err := Open(filepath.Join(t.TempDir(), "fenced.db"), Options{Group: 1, NoSync: true, MmapSize: 64 << 20, KeyHash: testHash})
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Restore(&fb); err != nil {
		t.Fatal(err)
	}
	if !fd.Fenced([]byte("k1")) || !fd.Fenced([]byte("anything")) {
		t.Fatal("a fenced rebase left keys writable")
	}
	if r := mustApply(t, fd, 6001, put("k1", "x")); !r.Moved {
		t.Fatalf("a put into a fenced restore applied: %+v", r)
	}
	if r := mustApply(t, fd, 6002, Moving{Op: OpUnfence, Term: 8, Ranges: []HashRange{{}}}.Encode()); !errors.Is(r.Err, ErrStaleMover) {
		t.Fatalf("an unfence of an older mover term: %+v", r)
	}
	mustApply(t, fd, 6003, Moving{Op: OpUnfence, Term: 9, Ranges: []HashRange{{}}}.Encode())
	if r := mustApply(t, fd, 6004, put("k1", "x")); r.Moved || r.Err != nil {
		t.Fatalf("a put after the restore's unfence: %+v", r)
	}
	if _, err := img.RebaseFenced(6000, 7, 0, &bytes.Buffer{}); err == nil {
		t.Fatal("a fenced rebase without a mover term")
	}
}

func TestImageReportsDamage(t *testing.T) {
	s := mustOpen(t)
	for i := 1; i <= 100; i++ {
		mustApply(t, s, uint64(i), put(fmt.Sprintf("k%03d", i), fmt.Sprintf("value-%03d-padding", i)))
	}
	ck := checkpointOf(t, s)
	if _, err := OpenImage(bytes.NewReader(ck[:len(ck)/2]), t.TempDir()); err == nil {
		t.Fatal("opened a truncated checkpoint")
	}
	// Change every copy of one value (bbolt may keep stale copies in free
	// pages): the digest fails, the image still opens, and its recomputed
	// tree differs in exactly that key's leaf.
	bad := bytes.ReplaceAll(ck, []byte("value-042-padding"), []byte("value-042-paddinG"))
	img, err := OpenImage(bytes.NewReader(bad), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if !errors.Is(img.DigestErr, snapshot.ErrCorrupt) {
		t.Fatalf("digest error %v, want ErrCorrupt", img.DigestErr)
	}
	sum, err := img.Summarize()
	if err != nil {
		t.Fatal(err)
	}
	leaves, _, err := snapshot.DiffLevels(sum.Tree, sum.Stored)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != 1 {
		t.Fatalf("damage shows in leaves %v, want exactly one", leaves)
	}
	es, err := img.LeafEntries(sum.Tree.Depth(), leaves)
	if err != nil {
		t.Fatal(err)
	}
	var damaged []string
	for _, e := range es {
		if v, _ := s.Get(e.Key); snapshot.EntryDigest(e.Key, v.Value, v.ModifyIndex) != e.Digest {
			damaged = append(damaged, string(e.Key))
		}
	}
	if len(damaged) != 1 {
		t.Fatalf("damaged keys in the leaf: %v, want one", damaged)
	}
}

func TestLeafEntriesAndVerifiedTrees(t *testing.T) {
	a, b := mustOpen(t), mustOpen(t)
	for i := 1; i <= 200; i++ {
		cmd := put(fmt.Sprintf("k%03d", i), "v")
		mustApply(t, a, uint64(i), cmd)
		if i == 42 {
			cmd = put("k042", "different")
		}
		mustApply(t, b, uint64(i), cmd)
	}
	verify := Command{Op: OpVerify, Key: []byte("nonce1")}.Encode()
	mustApply(t, a, 201, verify)
	mustApply(t, b, 201, verify)
	mustApply(t, a, 202, put("later", "x")) // after the verification
	ta, ok1 := a.VerifiedTree("nonce1")
	tb, ok2 := b.VerifiedTree("nonce1")
	if !ok1 || !ok2 {
		t.Fatal("verified trees not kept")
	}
	if ra, _ := a.VerifiedRoot("nonce1"); ra.Hash != ta.Root() || ra.Index != 201 {
		t.Fatalf("recorded root %x at %d, tree root %x", ra.Hash, ra.Index, ta.Root())
	}
	leaves, _, err := snapshot.DiffLevels(ta, tb)
	if err != nil || len(leaves) != 1 {
		t.Fatalf("leaves %v, %v; want one", leaves, err)
	}
	ea, err := a.LeafEntries(ta.Depth(), leaves, 201)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.LeafEntries(tb.Depth(), leaves, 201)
	if err != nil {
		t.Fatal(err)
	}
	keys := DiffEntries(ea, eb)
	if len(keys) != 1 || string(keys[0]) != "k042" {
		t.Fatalf("differing keys %q, want [k042]", keys)
	}
	// Only the most recent verifications keep a tree.
	for i := 0; i < maxVerifiedTrees; i++ {
		mustApply(t, a, uint64(203+i), Command{Op: OpVerify, Key: []byte(fmt.Sprintf("n%d", i))}.Encode())
	}
	if _, ok := a.VerifiedTree("nonce1"); ok {
		t.Fatal("an old verification still keeps its tree")
	}
	if _, ok := a.VerifiedRoot("nonce1"); !ok {
		t.Fatal("an old verification lost its root")
	}
}

func TestDeepVerifyReadsTheDataAtItsIndex(t *testing.T) {
	s := mustOpen(t)
	for i := 1; i <= 100; i++ {
		mustApply(t, s, uint64(i), put(fmt.Sprintf("k%03d", i), "v"))
	}
	deep := func(nonce string) []byte { return Command{Op: OpVerify, Key: []byte(nonce), Deep: true}.Encode() }
	// The deep verification sits mid-batch: the writes after it must not
	// show in what it reads.
	res, err := s.ApplyBatch([]LogEntry{{Index: 101, Data: deep("a")}, {Index: 102, Data: put("k001", "later")}})
	if err != nil || res[0].Root == nil {
		t.Fatalf("ApplyBatch: %v, %+v", err, res)
	}
	wait := func(nonce string) *snapshot.Tree {
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			tree, done, err := s.VerifiedData(nonce)
			if done {
				if err != nil {
					t.Fatal(err)
				}
				return tree
			}
			select {
			case <-deadline:
				t.Fatalf("deep verification %s did not finish", nonce)
			case <-tick.C:
			}
		}
	}
	if got := wait("a"); got.Root() != res[0].Root.Hash {
		t.Fatalf("deep root %x, kept root at the verification %x", got.Root(), res[0].Root.Hash)
	}

	// Rot on disk: the kept tree does not notice, the deep one does.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV)
		v := append([]byte(nil), b.Get([]byte("k050"))...)
		v[len(v)-1] = 'X'
		return b.Put([]byte("k050"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := s.AppliedIndex() + 1
	res, err = s.ApplyBatch([]LogEntry{{Index: idx, Data: deep("b")}})
	if err != nil {
		t.Fatal(err)
	}
	got := wait("b")
	if got.Root() == res[0].Root.Hash {
		t.Fatal("deep verification missed a value changed on disk")
	}
	kept, _ := s.VerifiedTree("b")
	leaves, _, _ := snapshot.DiffLevels(kept, got)
	if len(leaves) != 1 || leaves[0] != got.Leaf(snapshot.KeyHash([]byte("k050"))) {
		t.Fatalf("rot shows in leaves %v", leaves)
	}
}

// TestKeptTreeEqualsRebuildAcrossJournalAndReopen applies random puts and
// deletes in batches past several journal compactions, reopening the store
// now and then (what a restart or crash does), and checks the kept root
// always equals the tree rebuilt from the entries.
func TestKeptTreeEqualsRebuildAcrossJournalAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	opts := Options{Group: 1, NoSync: true, TreeDepth: 6}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	rng := rand.New(rand.NewSource(7))
	idx := uint64(0)
	check := func(when string) {
		t.Helper()
		var rebuilt *snapshot.Tree
		err := s.db.View(func(tx *bolt.Tx) error {
			var err error
			rebuilt, err = buildTree(tx, 6)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if rebuilt.Root() != s.Root().Hash {
			t.Fatalf("%s (index %d): kept root %x, rebuilt %x", when, idx, s.Root().Hash, rebuilt.Root())
		}
	}
	for b := 0; b < 3*journalCompactEvery+17; b++ {
		es := make([]LogEntry, 1+rng.Intn(8))
		for i := range es {
			idx++
			k := fmt.Sprintf("k%03d", rng.Intn(300))
			es[i] = LogEntry{Index: idx, Data: put(k, fmt.Sprint(rng.Int()))}
			if rng.Intn(4) == 0 {
				es[i].Data = del(k)
			}
		}
		if _, err := s.ApplyBatch(es); err != nil {
			t.Fatal(err)
		}
		if b%37 == 0 {
			check("before reopening")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(path, opts); err != nil {
				t.Fatal(err)
			}
			check("after reopening")
		}
	}
	check("at the end")
	// A checkpoint taken mid-journal restores to the same root.
	dst := mustOpen(t)
	if err := dst.Restore(bytes.NewReader(checkpointOf(t, s))); err != nil {
		t.Fatal(err)
	}
	if dst.Root().Hash != s.Root().Hash {
		t.Fatal("restored root differs")
	}
}

func TestCheckpointRecordsTheTermOfItsIndex(t *testing.T) {
	s := mustOpen(t)
	if _, err := s.ApplyBatch([]LogEntry{{Index: 1, Term: 2, Data: put("a", "1")}, {Index: 2, Term: 3, Data: put("b", "2")}}); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	if h := sn.Header(); h.Index != 2 || h.Term != 3 {
		t.Fatalf("checkpoint at index %d term %d, want 2 and 3", h.Index, h.Term)
	}
}
