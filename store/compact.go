package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A bbolt file never shrinks, and Tx.WriteTo copies its free pages too: a
// checkpoint taken after mass deletes would carry the dead space into every
// Raft snapshot, backup and repair. When free space makes up a large part
// of the file, a snapshot writes a compacted image instead: every bucket
// copied into a new file, pages filled, as bbolt's Compact does, but from
// the snapshot's own read transaction, so the image is exactly the state at
// the snapshot's index.

// compactAbove: a snapshot writes a compacted image when free pages make
// up at least compactFraction of the file and at least compactAbove bytes.
const (
	compactAbove    = 1 << 20
	compactFraction = 4 // one quarter
	compactTxBytes  = 32 << 20
)

var errNestedBucket = errors.New("store: nested bucket")

// ErrCompactionBusy is returned by CompactFile while snapshots are open;
// try again once they are released.
var ErrCompactionBusy = errors.New("store: compaction postponed")

// Compact makes the snapshot write a compacted image, if the state file is
// mostly free space: it copies the live data into a temporary file beside
// the state file now, so that Header reports the image's size. Call it
// before Header when the size matters (it is sent ahead of the data);
// WriteTo calls it otherwise. Release removes the file.
func (sn *Snapshot) Compact() error {
	if sn.compacted != "" || sn.free < compactAbove || sn.free*compactFraction < int64(sn.header.Size) {
		return nil
	}
	f, err := os.CreateTemp(sn.dir, "compact-*.db")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	if err := copyLive(sn.tx, path); err != nil {
		os.Remove(path)
		if errors.Is(err, errNestedBucket) {
			return nil // not a layout this store writes; copy it as is
		}
		return fmt.Errorf("store: compacting a snapshot: %w", err)
	}
	size, err := usedBytes(path)
	if err != nil {
		os.Remove(path)
		return err
	}
	sn.compacted, sn.header.Size = path, uint64(size)
	return nil
}

// usedBytes is how much of a bbolt file its pages use: bbolt grows a file
// ahead of its pages (to 8 MiB for a few), and an image needs only those
// (Tx.WriteTo writes as much).
func usedBytes(path string) (int64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var size int64
	err = db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size, err
}

// copyLive writes every bucket of src into a new bbolt file at path.
func copyLive(src *bolt.Tx, path string) error {
	dst, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	var names [][]byte
	err = src.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, append([]byte(nil), name...))
		return nil
	})
	for _, name := range names {
		if err != nil {
			break
		}
		err = copyBucket(src.Bucket(name), dst, name)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyBucket copies one top-level bucket in write transactions of about
// compactTxBytes each (bbolt holds a transaction's pages in memory).
func copyBucket(b *bolt.Bucket, dst *bolt.DB, name []byte) error {
	c := b.Cursor()
	k, v := c.First()
	first := true
	for first || k != nil {
		first = false
		err := dst.Update(func(tx *bolt.Tx) error {
			db, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			db.FillPercent = 1.0 // keys arrive in order
			if err := db.SetSequence(b.Sequence()); err != nil {
				return err
			}
			size := 0
			for ; k != nil && size < compactTxBytes; k, v = c.Next() {
				if v == nil {
					return fmt.Errorf("%w %q in %q", errNestedBucket, k, name)
				}
				if err := db.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
					return err
				}
				size += len(k) + len(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeImage writes the snapshot's bbolt image: the compacted file if
// Compact made one, else the read transaction's pages.
func (sn *Snapshot) writeImage(w io.Writer) (int64, error) {
	if sn.compacted == "" {
		return sn.tx.WriteTo(w)
	}
	f, err := os.Open(sn.compacted)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.CopyN(w, f, int64(sn.header.Size))
}

func (sn *Snapshot) removeCompacted() {
	if sn.compacted != "" {
		os.Remove(sn.compacted)
		sn.compacted = ""
	}
}

// compactFileAbove: CompactFile rewrites the state file when its free
// pages make up at least half of it and at least this many bytes.
const compactFileAbove = 16 << 20

// WantsCompaction reports whether the state file is mostly free space
// (see CompactFile).
func (s *Store) WantsCompaction() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return false
	}
	free := FreeBytes(s.db.Stats(), s.db.Info().PageSize)
	return free >= compactFileAbove && free*2 >= s.FileSize()
}

// CompactFile rewrites the state file with its live data only, at the
// applied index, and swaps it in: disk space that deletes freed comes
// back. Applies and reads wait while it runs (a copy of the live data). The
// new file is synced and renamed over the old one; on any error before the
// rename the state stays as it was.
func (s *Store) CompactFile() (before, after int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return 0, 0, ErrClosed
	}
	if n := s.openSnapshots.Load(); n > 0 {
		// Closing the file would wait for their read transactions (a
		// backup being streamed, say) with every apply held.
		return 0, 0, fmt.Errorf("%w: %d snapshots are open", ErrCompactionBusy, n)
	}
	if err := s.flush(); err != nil {
		return 0, 0, fmt.Errorf("store: commit before compaction: %w", err)
	}
	before = s.FileSize()
	tmp := s.path + ".compact"
	tx, err := s.db.Begin(false)
	if err != nil {
		return before, 0, err
	}
	err = copyLive(tx, tmp)
	tx.Rollback()
	if err == nil {
		err = syncFile(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("store: compacting the state file: %w", err)
	}
	if err := s.db.Close(); err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("store: close before compaction: %w", err)
	}
	s.db = nil
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		if oerr := s.open(); oerr != nil {
			return before, 0, errors.Join(err, oerr)
		}
		return before, 0, fmt.Errorf("store: swap in the compacted state: %w", err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return before, 0, err
	}
	if err := s.open(); err != nil {
		return before, 0, err
	}
	return before, s.FileSize(), nil
}

// removeLeftovers removes the temporary files a crash may have left beside
// the state file: compacted snapshot images (which a snapshot sent to a
// follower writes), and a compaction or a restore that did not finish.
func (s *Store) removeLeftovers() {
	images, _ := filepath.Glob(filepath.Join(filepath.Dir(s.path), "compact-*.db"))
	for _, p := range append(images, s.path+".compact", s.path+".restore") {
		os.Remove(p)
	}
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Committed is what Commit reports.
type Committed struct {
	// Index is the applied index the commit covers (the state file holds
	// every entry up to it; with synced commits, durably).
	Index uint64
	// LiveBytes is the state file's size less its free pages: about what
	// a compacted image of it holds.
	LiveBytes int64
}

// Commit commits every applied entry still waiting for the commit delay.
// With synced commits (the default) the state file is then durable up to
// the index it reports, which is at least the index applied when Commit
// was called.
func (s *Store) Commit() (Committed, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return Committed{}, ErrClosed
	}
	var c Committed
	var size int64
	if err := s.view(func(tx *bolt.Tx) error {
		c.Index = getU64(tx.Bucket(bucketMeta), keyApplied)
		size = tx.Size()
		return nil
	}); err != nil {
		return Committed{}, err
	}
	c.LiveBytes = max(0, size-FreeBytes(s.db.Stats(), s.db.Info().PageSize))
	return c, nil
}

// FreeBytes is the space in a bbolt file's free pages, counting the pages
// freed while a reader was open: they are free as soon as it ends (the
// snapshot that triggers a compaction is such a reader).
func FreeBytes(st bolt.Stats, pageSize int) int64 {
	return int64(st.FreeAlloc) + int64(st.PendingPageN)*int64(pageSize)
}

// RewriteFile rewrites the closed bbolt file at path with its live pages
// only (bbolt's Compact), syncs the copy and renames it over the original,
// so that the space deletes freed goes back to the file system. On any
// error the file at path is left as it was. It serves files other than
// state files too (a group's Raft log).
func RewriteFile(path string) (before, after int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	before = fi.Size()
	tmp := path + ".compact"
	os.Remove(tmp)
	src, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return before, 0, err
	}
	defer src.Close()
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return before, 0, err
	}
	err = bolt.Compact(dst, src, compactTxBytes)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = src.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return before, 0, fmt.Errorf("store: rewriting %s: %w", filepath.Base(path), err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return before, 0, err
	}
	if fi, err = os.Stat(path); err != nil {
		return before, 0, err
	}
	return before, fi.Size(), nil
}
