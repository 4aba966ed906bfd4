package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// A verify command makes every replica record its Merkle root at the
// command's index. The most recent ones also keep a copy of the whole tree,
// so replicas found to disagree can be compared subtree by subtree at
// exactly that index, after the data has moved on.

// Bounds on what verify commands leave in memory.
const (
	maxVerified      = 256 // roots
	maxVerifiedTrees = 8   // trees (a tree of depth 12 is 256 KiB)
)

type verifyRecord struct {
	root Root
	tree *snapshot.Tree
	// A deep verification's tree recomputed from the entries, once done.
	data     *snapshot.Tree
	dataErr  error
	dataDone bool
}

func (s *Store) recordVerify(nonce string, r Root, t *snapshot.Tree) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	if s.verified == nil {
		s.verified = map[string]verifyRecord{}
	}
	s.verified[nonce] = verifyRecord{root: r, tree: t.Clone(), data: s.verified[nonce].data}
	s.verifySeq = append(s.verifySeq, nonce)
	if len(s.verifySeq) > maxVerified {
		delete(s.verified, s.verifySeq[0])
		s.verifySeq = s.verifySeq[1:]
	}
	if n := len(s.verifySeq); n > maxVerifiedTrees {
		old := s.verifySeq[n-maxVerifiedTrees-1]
		if rec, ok := s.verified[old]; ok {
			rec.tree, rec.data, rec.dataDone = nil, nil, false
			s.verified[old] = rec
		}
	}
}

// VerifiedRoot returns the root this replica recorded when it applied the
// verify command with nonce, if it has applied it (and not forgotten it).
func (s *Store) VerifiedRoot(nonce string) (Root, bool) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	r, ok := s.verified[nonce]
	return r.root, ok
}

// deepVerifyNonce reports whether data is a deep verify command, and its
// nonce.
func deepVerifyNonce(data []byte) (string, bool) {
	if len(data) < 2 || Op(data[0]) != OpVerify || data[1]&flagDeep == 0 {
		return "", false
	}
	c, err := DecodeCommand(data)
	if err != nil {
		return "", false
	}
	return string(c.Key), true
}

// startDeepVerify recomputes, in the background, the Merkle tree of the
// entries as committed at root.Index (a read transaction opened right
// after that index committed) and records it under nonce. The caller holds
// s.mu for reading.
func (s *Store) startDeepVerify(nonce string, root Root) {
	tx, err := s.readTx()
	if err == nil && getU64(tx.Bucket(bucketMeta), keyApplied) != root.Index {
		tx.Rollback()
		err = fmt.Errorf("store: deep verification at %d found the data at another index", root.Index)
	}
	if err != nil {
		s.recordDeep(nonce, nil, err)
		return
	}
	s.openSnapshots.Add(1) // a long read, as a snapshot's (CompactFile)
	go func() {
		defer s.openSnapshots.Add(-1)
		defer tx.Rollback()
		t, err := buildTree(tx, root.Depth)
		s.recordDeep(nonce, t, err)
	}()
}

func (s *Store) recordDeep(nonce string, t *snapshot.Tree, err error) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	rec, ok := s.verified[nonce]
	if !ok {
		return
	}
	rec.data, rec.dataErr, rec.dataDone = t, err, true
	s.verified[nonce] = rec
}

// VerifiedData returns the tree a deep verification recomputed from the
// entries at its index: done is false while it is being computed.
func (s *Store) VerifiedData(nonce string) (t *snapshot.Tree, done bool, err error) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	r, ok := s.verified[nonce]
	if !ok {
		return nil, false, nil
	}
	return r.data, r.dataDone, r.dataErr
}

// VerifiedTree returns the whole tree recorded at the verify command with
// nonce, if it is one of the most recent. The tree must not be modified.
func (s *Store) VerifiedTree(nonce string) (*snapshot.Tree, bool) {
	s.verifyMu.Lock()
	defer s.verifyMu.Unlock()
	r, ok := s.verified[nonce]
	return r.tree, ok && r.tree != nil
}

// LeafEntry identifies one stored entry by digest, for comparing replicas
// key by key without shipping values.
type LeafEntry struct {
	Key         []byte
	ModifyIndex uint64
	Digest      snapshot.Digest
}

// LeafEntries returns, in key order, the entries whose key hashes fall in
// the given leaves of a tree of the given depth, leaving out entries
// modified after maxIndex (0: no bound). It reads the current state, so a
// key deleted after maxIndex is missing from the answer. It scans every key.
func (s *Store) LeafEntries(depth int, leaves []int, maxIndex uint64) ([]LeafEntry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	var out []LeafEntry
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = leafEntries(tx, depth, leaves, maxIndex)
		return err
	})
	return out, err
}

func leafEntries(tx *bolt.Tx, depth int, leaves []int, maxIndex uint64) ([]LeafEntry, error) {
	want := make(map[int]bool, len(leaves))
	for _, l := range leaves {
		want[l] = true
	}
	var out []LeafEntry
	err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		if !want[int(snapshot.KeyHash(k)>>(64-depth))] {
			return nil
		}
		e, err := decodeRecord(k, v, true)
		if err != nil {
			return err
		}
		if maxIndex != 0 && e.ModifyIndex > maxIndex {
			return nil
		}
		out = append(out, LeafEntry{Key: e.Key, ModifyIndex: e.ModifyIndex, Digest: snapshot.EntryDigest(k, e.Value, e.ModifyIndex)})
		return nil
	})
	return out, err
}

// DiffEntries compares two key-ordered entry lists and returns the keys
// present in only one or different between them, in key order.
func DiffEntries(a, b []LeafEntry) [][]byte {
	var out [][]byte
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && bytes.Compare(a[i].Key, b[j].Key) < 0):
			out = append(out, a[i].Key)
			i++
		case i == len(a) || bytes.Compare(a[i].Key, b[j].Key) > 0:
			out = append(out, b[j].Key)
			j++
		default:
			if a[i].Digest != b[j].Digest {
				out = append(out, a[i].Key)
			}
			i++
			j++
		}
	}
	return out
}
