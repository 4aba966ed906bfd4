package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// Image is a checkpoint opened for inspection, apart from any live state:
// its digest checked, its entries readable, its Merkle tree recomputed from
// the entries themselves. Backups are verified and restored through it.
// An Image is safe for use by one goroutine; Close removes its temporary
// file.
type Image struct {
	// Header is the checkpoint's header as written.
	Header snapshot.Header
	// DigestErr is set when the image's SHA-256 trailer did not match: the
	// bytes changed after the checkpoint was written.
	DigestErr error
	path      string
	db        *bolt.DB
}

// OpenImage copies the checkpoint read from r into a temporary file under
// dir and opens its image read-only. A complete image whose digest does not
// match is still opened (DigestErr says so) so that the damage can be
// located; a truncated or unreadable one is an error.
func OpenImage(r io.Reader, dir string) (img *Image, err error) {
	cr, err := snapshot.NewReader(r)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "ringkv-image-*.db")
	if err != nil {
		return nil, err
	}
	img = &Image{Header: cr.Header(), path: f.Name()}
	defer func() {
		if err != nil {
			img.Close()
			img = nil
		}
	}()
	n, cerr := io.Copy(f, cr)
	if err := f.Close(); err != nil {
		return img, err
	}
	if cerr != nil {
		if !errors.Is(cerr, snapshot.ErrCorrupt) || uint64(n) != img.Header.Size {
			return img, cerr
		}
		img.DigestErr = cerr
	}
	if img.db, err = openReadOnly(img.path); err != nil {
		return img, err
	}
	return img, nil
}

// openReadOnly opens a bbolt file that may be damaged: bbolt panics on
// some malformed pages, which is turned into an error here.
func openReadOnly(path string) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: image unreadable: %v", ErrRestoreMismatch, p)
		}
	}()
	db, err = bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
	}
	return db, nil
}

// view runs fn in a read transaction, turning a panic on a damaged page
// into an error.
func (img *Image) view(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: image unreadable: %v", ErrRestoreMismatch, p)
		}
	}()
	return img.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil || tx.Bucket(bucketKV) == nil {
			return fmt.Errorf("%w: buckets missing", ErrRestoreMismatch)
		}
		return fn(tx)
	})
}

// ImageSummary is what an image holds, recomputed from its entries.
type ImageSummary struct {
	// Index and Keys are the applied index and key count the image records.
	Index uint64
	Keys  uint64
	// Counted is the number of entries actually found.
	Counted uint64
	// Tree is recomputed from the entries; Stored is the tree the image
	// carries in its merkle bucket.
	Tree   *snapshot.Tree
	Stored *snapshot.Tree
}

// Summarize reads every entry and recomputes the Merkle tree, at the depth
// the image records.
func (img *Image) Summarize() (ImageSummary, error) {
	var sum ImageSummary
	err := img.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		sum.Index, sum.Keys = getU64(m, keyApplied), getU64(m, keyCount)
		depth := int(getU64(m, keyDepth))
		if depth == 0 {
			return fmt.Errorf("%w: image has no merkle tree", ErrRestoreMismatch)
		}
		var err error
		if sum.Stored, err = loadTree(tx, depth); err != nil {
			return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
		}
		if sum.Tree, err = snapshot.NewTree(depth); err != nil {
			return err
		}
		return tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			e, err := decodeRecord(k, v, true)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
			}
			sum.Counted++
			sum.Tree.Toggle(snapshot.KeyHash(k), snapshot.EntryDigest(k, e.Value, e.ModifyIndex))
			return nil
		})
	})
	return sum, err
}

// LeafEntries is Store.LeafEntries on the image.
func (img *Image) LeafEntries(depth int, leaves []int) ([]LeafEntry, error) {
	var out []LeafEntry
	err := img.view(func(tx *bolt.Tx) error {
		var err error
		out, err = leafEntries(tx, depth, leaves, 0)
		return err
	})
	return out, err
}

// ForEach calls fn for every entry in key order. The slices are valid only
// during the call.
func (img *Image) ForEach(fn func(e Entry) error) error {
	return img.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			e, err := decodeRecord(k, v, true)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrRestoreMismatch, err)
			}
			return fn(e)
		})
	})
}

// Path is the image's temporary file.
func (img *Image) Path() string { return img.path }

// Close releases the image and removes its temporary file.
func (img *Image) Close() error {
	var err error
	if img.db != nil {
		err = img.db.Close()
		img.db = nil
	}
	if rerr := os.Remove(img.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Rebase rewrites a checkpoint so that its image records applied index
// index, keeping every entry and modify index, and writes it to w. A
// restore through Raft needs this: the group's log restarts at index, not
// at the index the checkpoint was taken at elsewhere. index must not be
// below the image's own.
func (img *Image) Rebase(index, term uint64, w io.Writer) (snapshot.Header, error) {
	return img.rebase(index, term, 0, w)
}

// RebaseFenced is Rebase for a restore in progress: the image also records
// every key as fenced and moverTerm as the highest mover term seen, so the
// group installing it refuses writes until the restore's own unfence (of
// moverTerm) lifts the fence, whatever fences and terms the image held.
func (img *Image) RebaseFenced(index, term, moverTerm uint64, w io.Writer) (snapshot.Header, error) {
	if moverTerm == 0 {
		return snapshot.Header{}, fmt.Errorf("store: a fenced rebase needs the mover term")
	}
	return img.rebase(index, term, moverTerm, w)
}

func (img *Image) rebase(index, term, moverTerm uint64, w io.Writer) (snapshot.Header, error) {
	sum, err := img.Summarize()
	if err != nil {
		return snapshot.Header{}, err
	}
	if index < sum.Index {
		return snapshot.Header{}, fmt.Errorf("store: rebase to %d below the image's index %d", index, sum.Index)
	}
	tmp := img.path + ".rebase"
	defer os.Remove(tmp)
	if err := copyFile(img.path, tmp); err != nil {
		return snapshot.Header{}, err
	}
	db, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		return snapshot.Header{}, err
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if err := putU64(m, keyAppliedTerm, term); err != nil {
			return err
		}
		if moverTerm > 0 {
			if err := putU64(m, keyMoveTerm, moverTerm); err != nil {
				return err
			}
			if err := m.Put(keyFences, spanSetOf([]HashRange{{}}).encode()); err != nil {
				return err
			}
		}
		return putU64(m, keyApplied, index)
	})
	if err != nil {
		return snapshot.Header{}, err
	}
	var h snapshot.Header
	err = db.View(func(tx *bolt.Tx) error {
		h = snapshot.Header{Group: img.Header.Group, Index: index, Term: term, Keys: sum.Counted, Size: uint64(tx.Size()), Root: sum.Tree.Root()}
		cw, err := snapshot.NewWriter(w, h)
		if err != nil {
			return err
		}
		if _, err := tx.WriteTo(cw); err != nil {
			return err
		}
		return cw.Close()
	})
	return h, err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeSynced(to, in)
}

// Depth is the depth of the Merkle tree the image records.
func (img *Image) Depth() int {
	depth := 0
	_ = img.view(func(tx *bolt.Tx) error {
		depth = int(getU64(tx.Bucket(bucketMeta), keyDepth))
		return nil
	})
	return depth
}

// Check confirms that the image's entries give the root and count its
// header claims.
func (img *Image) Check() error {
	if img.DigestErr != nil {
		return img.DigestErr
	}
	sum, err := img.Summarize()
	if err != nil {
		return err
	}
	if sum.Tree.Root() != img.Header.Root || sum.Counted != img.Header.Keys {
		return fmt.Errorf("checkpoint of group %d: entries give root %x and %d keys, header says %x and %d",
			img.Header.Group, sum.Tree.Root(), sum.Counted, img.Header.Root, img.Header.Keys)
	}
	return nil
}

// TreeBytes is the serialised Merkle tree of the image's entries, and its
// root.
func (img *Image) TreeBytes() ([]byte, snapshot.Digest, error) {
	sum, err := img.Summarize()
	if err != nil {
		return nil, snapshot.Digest{}, err
	}
	b, err := sum.Tree.MarshalBinary()
	return b, sum.Tree.Root(), err
}
