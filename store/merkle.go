package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// The store keeps a Merkle tree of its entries (package snapshot's Tree),
// updated in the same transaction as the data. Leaf hashes live in the
// "merkle" bucket (absent = zero), the depth in the meta bucket. Rewriting
// the leaves a batch touches would rewrite most of that bucket's pages on
// every commit, since a batch's keys land in random leaves; so a commit
// appends the leaves it changed to the "merkle_journal" bucket instead
// (one record, keyed by the applied index, written where the last one
// ended), and every journalCompactEvery records the changed leaves are
// folded into "merkle" and the journal emptied. Opening a store loads the
// leaves, replays the journal and recomputes the inner nodes; the root at
// the applied index is then always at hand.

var (
	bucketMerkle  = []byte("merkle")
	bucketJournal = []byte("merkle_journal")
	keyDepth      = []byte("merkle_depth")
)

// journalCompactEvery is how many journal records accumulate before they
// are folded into the leaves.
const journalCompactEvery = 128

// journalRecord lays out leaves and their digests: 4-byte leaf, 32 bytes.
func journalRecord(t *snapshot.Tree, leaves map[int]bool) []byte {
	b := make([]byte, 0, len(leaves)*(4+len(snapshot.Digest{})))
	for i := range leaves {
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		d := t.LeafDigest(i)
		b = append(b, d[:]...)
	}
	return b
}

// replayJournal applies the journal to t and returns the leaves it
// touched and how many records it holds.
func replayJournal(tx *bolt.Tx, t *snapshot.Tree) (map[int]bool, int, error) {
	touched := map[int]bool{}
	jb := tx.Bucket(bucketJournal)
	if jb == nil {
		return touched, 0, nil
	}
	const rec = 4 + len(snapshot.Digest{})
	n := 0
	err := jb.ForEach(func(k, v []byte) error {
		n++
		if len(v)%rec != 0 {
			return fmt.Errorf("store: corrupt merkle journal record %x", k)
		}
		for ; len(v) > 0; v = v[rec:] {
			i := int(binary.BigEndian.Uint32(v))
			if i >= t.Leaves() {
				return fmt.Errorf("store: merkle journal leaf %d beyond the tree", i)
			}
			var d snapshot.Digest
			copy(d[:], v[4:rec])
			t.SetLeaf(i, d)
			touched[i] = true
		}
		return nil
	})
	return touched, n, err
}

// persistLeaves records the leaves a commit changed, inside its
// transaction: a journal record, or, every journalCompactEvery records,
// the leaves themselves.
func (s *Store) persistLeaves(tx *bolt.Tx, changed map[int]bool, index uint64) error {
	if len(changed) == 0 {
		return nil
	}
	for i := range changed {
		s.unfolded[i] = true
	}
	if s.journaled+1 < journalCompactEvery {
		jb, err := tx.CreateBucketIfNotExists(bucketJournal)
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], index)
		if err := jb.Put(k[:], journalRecord(s.tree, changed)); err != nil {
			return err
		}
		s.journaled++
		return nil
	}
	if err := saveLeaves(tx, s.tree, s.unfolded); err != nil {
		return err
	}
	if tx.Bucket(bucketJournal) != nil {
		if err := tx.DeleteBucket(bucketJournal); err != nil {
			return err
		}
	}
	s.unfolded, s.journaled = map[int]bool{}, 0
	return nil
}

// Root is the Merkle root of the store at an applied index.
type Root struct {
	Index uint64
	Hash  snapshot.Digest
	Depth int
}

// Root returns the Merkle root at the applied index. The tree's leaves are
// maintained as entries apply; its inner nodes are rehashed here, once for
// all the entries applied since the last call.
func (s *Store) Root() Root {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	if s.rootStale {
		s.root.Store(&Root{Index: s.applied.Load(), Hash: s.tree.Root(), Depth: s.tree.Depth()})
		s.rootStale = false
	}
	return *s.root.Load()
}

func leafKey(i int) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(i))
	return k[:]
}

// loadTree reads the stored tree, or builds it from the data when the file
// has none yet.
func loadTree(tx *bolt.Tx, depth int) (t *snapshot.Tree, err error) {
	m := tx.Bucket(bucketMeta)
	if d := getU64(m, keyDepth); d != 0 {
		depth = int(d)
	}
	t, err = snapshot.NewTree(depth)
	if err != nil {
		return nil, err
	}
	mb := tx.Bucket(bucketMerkle)
	if mb == nil {
		return buildTree(tx, depth)
	}
	defer func() {
		if err == nil {
			_, _, err = replayJournal(tx, t)
		}
	}()
	err = mb.ForEach(func(k, v []byte) error {
		if len(k) != 4 || len(v) != len(snapshot.Digest{}) {
			return fmt.Errorf("store: corrupt merkle leaf %x", k)
		}
		i := int(binary.BigEndian.Uint32(k))
		if i >= t.Leaves() {
			return fmt.Errorf("store: merkle leaf %d beyond depth %d", i, depth)
		}
		var d snapshot.Digest
		copy(d[:], v)
		t.SetLeaf(i, d)
		return nil
	})
	return t, err
}

// buildTree computes the tree from every entry.
func buildTree(tx *bolt.Tx, depth int) (*snapshot.Tree, error) {
	t, err := snapshot.NewTree(depth)
	if err != nil {
		return nil, err
	}
	err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		e, err := decodeRecord(k, v, true)
		if err != nil {
			return err
		}
		t.Toggle(snapshot.KeyHash(k), snapshot.EntryDigest(k, e.Value, e.ModifyIndex))
		return nil
	})
	return t, err
}

// saveLeaves writes the given leaves and the depth inside tx.
func saveLeaves(tx *bolt.Tx, t *snapshot.Tree, leaves map[int]bool) error {
	mb, err := tx.CreateBucketIfNotExists(bucketMerkle)
	if err != nil {
		return err
	}
	if err := putU64(tx.Bucket(bucketMeta), keyDepth, uint64(t.Depth())); err != nil {
		return err
	}
	var zero snapshot.Digest
	for i := range leaves {
		d := t.LeafDigest(i)
		if d == zero {
			if err := mb.Delete(leafKey(i)); err != nil {
				return err
			}
			continue
		}
		if err := mb.Put(leafKey(i), d[:]); err != nil {
			return err
		}
	}
	return nil
}
