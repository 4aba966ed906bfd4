package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// Snapshot is an immutable view of the store at one applied index, backed by
// a bbolt read transaction. It stays valid while Apply continues; Release it
// when done.
type Snapshot struct {
	tx     *bolt.Tx
	header snapshot.Header
	// dir holds the compacted image, compacted (see Compact); free is the
	// state file's free space when the snapshot was taken.
	dir       string
	free      int64
	compacted string
	// open counts the store's open snapshots (CompactFile waits for none).
	open     *atomic.Int32
	released atomic.Bool
}

// Snapshot captures the current state. It may be called from any
// goroutine: the view is the last committed apply.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	tx, err := s.readTx()
	if err != nil {
		return nil, err
	}
	m := tx.Bucket(bucketMeta)
	applied := getU64(m, keyApplied)
	root := s.Root()
	if root.Index != applied {
		// An apply committed between the published root and this
		// transaction: take the root from the transaction itself.
		t, err := loadTree(tx, root.Depth)
		if err != nil {
			tx.Rollback()
			return nil, err
		}
		root = Root{Index: applied, Hash: t.Root(), Depth: t.Depth()}
	}
	s.openSnapshots.Add(1)
	return &Snapshot{tx: tx, dir: filepath.Dir(s.path), free: int64(s.db.Stats().FreeAlloc), open: &s.openSnapshots, header: snapshot.Header{
		Group: s.opts.Group,
		Index: applied,
		Term:  getU64(m, keyAppliedTerm),
		Keys:  getU64(m, keyCount),
		Size:  uint64(tx.Size()),
		Root:  root.Hash,
	}}, nil
}

// Header returns the checkpoint header this snapshot writes.
func (sn *Snapshot) Header() snapshot.Header { return sn.header }

// WriteTo writes the snapshot as a checkpoint (see package snapshot),
// compacted when Compact finds that worth it.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if err := sn.Compact(); err != nil {
		return 0, err
	}
	cw, err := snapshot.NewWriter(w, sn.header)
	if err != nil {
		return 0, err
	}
	n, err := sn.writeImage(cw)
	if err != nil {
		return n, err
	}
	return n, cw.Close()
}

// Release ends the snapshot's read transaction and removes its compacted
// image.
func (sn *Snapshot) Release() {
	if sn.released.Swap(true) {
		return
	}
	sn.removeCompacted()
	_ = sn.tx.Rollback()
	sn.open.Add(-1)
}

// Restore replaces the whole state with the checkpoint read from r. The
// image is written to a temporary file, its digest checked, the file synced
// and opened to confirm it matches the header; only then is it renamed over
// the state file. On any error the current state is untouched.
func (s *Store) Restore(r io.Reader) error {
	cr, err := snapshot.NewReader(r)
	if err != nil {
		return err
	}
	tmp := s.path + ".restore"
	if err := writeSynced(tmp, cr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := checkImage(tmp, cr.Header()); err != nil {
		os.Remove(tmp)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		if err := s.flush(); err != nil {
			return fmt.Errorf("store: commit before restore: %w", err)
		}
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("store: close before restore: %w", err)
		}
		s.db = nil
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("store: swap in restored state: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	if err := s.open(); err != nil {
		return err
	}
	s.notify()
	return nil
}

func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkImage opens a restored image read-only and checks it holds what the
// header claims.
func checkImage(path string, h snapshot.Header) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil || tx.Bucket(bucketKV) == nil {
			return fmt.Errorf("%w: buckets missing", ErrRestoreMismatch)
		}
		if got := getU64(m, keyApplied); got != h.Index {
			return fmt.Errorf("%w: image at index %d, header %d", ErrRestoreMismatch, got, h.Index)
		}
		if got := getU64(m, keyCount); got != h.Keys {
			return fmt.Errorf("%w: image holds %d keys, header %d", ErrRestoreMismatch, got, h.Keys)
		}
		// Recompute the Merkle root from the entries themselves: it must
		// match both the header and the tree stored in the image.
		depth := int(getU64(m, keyDepth))
		if depth == 0 {
			return fmt.Errorf("%w: image has no merkle tree", ErrRestoreMismatch)
		}
		built, err := buildTree(tx, depth)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
		}
		stored, err := loadTree(tx, depth)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
		}
		if built.Root() != h.Root || stored.Root() != h.Root {
			return fmt.Errorf("%w: merkle root of the entries %x, stored %x, header %x", ErrRestoreMismatch, built.Root(), stored.Root(), h.Root)
		}
		return nil
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
