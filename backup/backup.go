package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/verify"
)

// Cluster is what a backup or a restore needs of the node that runs it.
type Cluster interface {
	// Layout is the node's current cluster layout.
	Layout() *layout.Layout
	// FetchCheckpoint writes a checkpoint of group g, from its leader
	// after a linearizable barrier, to the writer start returns; start is
	// called again when a new leader is tried.
	FetchCheckpoint(ctx context.Context, g base.GroupID, start func() (io.Writer, error)) error
	// BeginRestore takes the cluster's restore lock (ErrConflict while
	// another restore holds it) and renews it until the Run ends; cancel
	// is called if the lock is lost.
	BeginRestore(ctx context.Context, cancel context.CancelFunc) (Run, error)
	// Verify verifies group g's replicas (package verify).
	Verify(ctx context.Context, g base.GroupID, o verify.Options) (api.GroupVerification, error)
	// List reads keys in order, linearizably, after a key.
	List(ctx context.Context, after []byte, limit int, keysOnly bool) ([]protocol.KV, error)
	// BeforeInstall runs before group g's restored state is installed; an
	// error fails the restore there (a test hook; nil in production).
	BeforeInstall(g base.GroupID) error
	// Stopping is closed when the node stops, which ends a restore.
	Stopping() <-chan struct{}
}

// Run is one restore holding the cluster's restore lock. Every group it
// fences or writes to is put back by Failed; End releases the lock.
type Run interface {
	// Layout is the layout the lock was taken under: its groups are
	// fixed while the lock is held.
	Layout() *layout.Layout
	// FenceAll fences every group (writes wait) and keeps a checkpoint
	// of each as it is, under dir.
	FenceAll(ctx context.Context, dir string) error
	// Install replaces group g's state with the checkpoint at path.
	Install(ctx context.Context, g base.GroupID, path string) error
	// Ingest writes moved entries into group g.
	Ingest(ctx context.Context, g base.GroupID, entries []store.MovedEntry) error
	// Failed puts every group touched back as it was and returns the
	// error to report, saying so.
	Failed(cause error) error
	// End lifts the fences and releases the lock.
	End()
}

// Backup writes a backup archive of every group to w (see package
// snapshot's archive format). Each group's checkpoint comes from its
// leader after a linearizable barrier, so the archive holds every write
// acknowledged before the call; each is checked against its Merkle root
// before it is written. Temporary files go under dir.
func Backup(ctx context.Context, c Cluster, dir string, w io.Writer) (snapshot.Manifest, error) {
	l := c.Layout()
	if !l.Initialized {
		return snapshot.Manifest{}, fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	if l.Restore != nil {
		return snapshot.Manifest{}, fmt.Errorf("%w: a restore is in progress (%s); back up once it is done", base.ErrConflict, l.Restore.ID)
	}
	if l.Migration != nil {
		// Keys in motion sit in two groups: a backup now would hold both.
		return snapshot.Manifest{}, fmt.Errorf("%w: a ring change is in progress (%s); back up once it is done", base.ErrConflict, l.Migration.Change)
	}
	rs, err := json.Marshal(l.Ring)
	if err != nil {
		return snapshot.Manifest{}, err
	}
	m := snapshot.Manifest{Format: snapshot.ArchiveFormat, Created: time.Now().UTC().Truncate(time.Second), RingEpoch: l.Ring.Epoch, Ring: rs}
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	trees := map[string][]byte{}
	for _, g := range l.Groups {
		f, err := os.CreateTemp(dir, "backup-*.ckpt")
		if err != nil {
			return m, err
		}
		files[snapshot.CheckpointName(uint32(g.ID))] = f
		err = c.FetchCheckpoint(ctx, g.ID, func() (io.Writer, error) {
			if err := f.Truncate(0); err != nil {
				return nil, err
			}
			_, err := f.Seek(0, io.SeekStart)
			return f, err
		})
		if err != nil {
			return m, fmt.Errorf("group %d: %w", g.ID, err)
		}
		mg, tree, err := describeCheckpoint(f, dir)
		if err != nil {
			return m, fmt.Errorf("group %d: %w", g.ID, err)
		}
		trees[mg.Tree.Name] = tree
		m.Groups = append(m.Groups, mg)
	}
	if m.Root, err = m.ComputeRoot(); err != nil {
		return m, err
	}
	aw, err := snapshot.NewArchiveWriter(w, &m)
	if err != nil {
		return m, err
	}
	for _, g := range m.Groups {
		f := files[g.Checkpoint.Name]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return m, err
		}
		if err := aw.AddFile(g.Checkpoint.Name, g.Checkpoint.Size, f); err != nil {
			return m, err
		}
		if err := aw.AddFile(g.Tree.Name, g.Tree.Size, bytes.NewReader(trees[g.Tree.Name])); err != nil {
			return m, err
		}
	}
	return m, aw.Close()
}

// describeCheckpoint checks the checkpoint in f and returns its manifest
// entry and serialised Merkle tree.
func describeCheckpoint(f *os.File, dir string) (snapshot.ManifestGroup, []byte, error) {
	var mg snapshot.ManifestGroup
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return mg, nil, err
	}
	h := sha256.New()
	img, err := store.OpenImage(io.TeeReader(f, h), dir)
	if err != nil {
		return mg, nil, err
	}
	defer img.Close()
	if err := img.Check(); err != nil {
		return mg, nil, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return mg, nil, err
	}
	tree, root, err := img.TreeBytes()
	if err != nil {
		return mg, nil, err
	}
	th := sha256.Sum256(tree)
	hd := img.Header
	mg = snapshot.ManifestGroup{
		ID: hd.Group, Index: hd.Index, Term: hd.Term, Keys: hd.Keys, Root: hex.EncodeToString(root[:]),
		TreeDepth:  img.Depth(),
		Checkpoint: snapshot.File{Name: snapshot.CheckpointName(hd.Group), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))},
		Tree:       snapshot.File{Name: snapshot.TreeName(hd.Group), Size: int64(len(tree)), SHA256: hex.EncodeToString(th[:])},
	}
	return mg, tree, nil
}
