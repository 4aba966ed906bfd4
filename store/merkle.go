package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// The store keeps a Merkle tree of its entries (package snapshot's Tree),
// updated in the same transaction as the data: leaf hashes live in the
// "merkle" bucket (absent = zero), the depth in the meta bucket. Opening a
// store loads the leaves and recomputes the inner nodes; the root at the
// applied index is then always at hand.

var (
	bucketMerkle = []byte("merkle")
	keyDepth     = []byte("merkle_depth")
)

// Root is the Merkle root of the store at an applied index.
type Root struct {
	Index uint64
	Hash  snapshot.Digest
	Depth int
}

func leafKey(i int) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(i))
	return k[:]
}

// loadTree reads the stored tree, or builds it from the data when the file
// has none yet.
func loadTree(tx *bolt.Tx, depth int) (*snapshot.Tree, error) {
	m := tx.Bucket(bucketMeta)
	if d := getU64(m, keyDepth); d != 0 {
		depth = int(d)
	}
	t, err := snapshot.NewTree(depth)
	if err != nil {
		return nil, err
	}
	mb := tx.Bucket(bucketMerkle)
	if mb == nil {
		return buildTree(tx, depth)
	}
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
