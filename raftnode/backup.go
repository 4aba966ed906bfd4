package raftnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// Backup writes a backup archive of every group to w (see package
// snapshot's archive format). Each group's checkpoint comes from its
// leader after a linearizable barrier, so the archive holds every write
// acknowledged before the call; each is checked against its Merkle root
// before it is written. Temporary files go under dir.
func (n *Node) Backup(ctx context.Context, dir string, w io.Writer) (snapshot.Manifest, error) {
	l := n.Layout()
	if !l.Initialized {
		return snapshot.Manifest{}, fmt.Errorf("%w: cluster layout not initialised yet", ErrUnavailable)
	}
	if l.Migration != nil {
		// Keys in motion sit in two groups: a backup now would hold both.
		return snapshot.Manifest{}, fmt.Errorf("%w: a ring change is in progress (%s); back up once it is done", ErrConflict, l.Migration.Change)
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
		err = n.fetchCheckpoint(ctx, g.ID, 0, func() (io.Writer, error) {
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
	if err := checkImage(img); err != nil {
		return mg, nil, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return mg, nil, err
	}
	tree, root, err := treeOf(img)
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

// RestoredGroup reports one group restored from its checkpoint.
type RestoredGroup struct {
	Group GroupID `json:"group"`
	Keys  uint64  `json:"keys"`
	// BackupRoot is the root in the archive; Root the group's root when
	// verified after the restore, at Index.
	BackupRoot string `json:"backup_root"`
	Root       string `json:"root"`
	Index      uint64 `json:"index"`
	Agree      bool   `json:"agree"`
}

// RestoreReport says what a restore did and proves it.
type RestoreReport struct {
	// Mode is "checkpoint" when the target's ring matched the backup's and
	// every group's state was installed as it was, or "rehash" when the
	// keys were written onto the target's ring one by one.
	Mode   string          `json:"mode"`
	Keys   uint64          `json:"keys"`
	Groups []RestoredGroup `json:"groups,omitempty"`
	// BackupDigest and ClusterDigest (rehash mode) cover the set of keys
	// and values: in the archive, and read back from the cluster after.
	BackupDigest  string `json:"backup_digest,omitempty"`
	ClusterDigest string `json:"cluster_digest,omitempty"`
	ClusterKeys   uint64 `json:"cluster_keys,omitempty"`
	// Identical is the proof: every root agrees (checkpoint mode) or the
	// digests and counts match (rehash mode).
	Identical bool `json:"identical"`
}

// RestoreOptions qualifies a restore.
type RestoreOptions struct {
	// Force allows restoring into a cluster that already holds keys; in
	// checkpoint mode those are replaced, in rehash mode merged.
	Force bool
}

// Restore loads a backup archive read from r into the cluster. Every file
// is checked against the manifest and every checkpoint against its Merkle
// root before anything changes. Temporary files go under dir.
func (n *Node) Restore(ctx context.Context, dir string, r io.Reader, o RestoreOptions) (RestoreReport, error) {
	var rep RestoreReport
	l := n.Layout()
	if !l.Initialized {
		return rep, fmt.Errorf("%w: cluster layout not initialised yet", ErrUnavailable)
	}
	if l.Migration != nil {
		return rep, fmt.Errorf("%w: a ring change is in progress (%s); restore once it is done", ErrConflict, l.Migration.Change)
	}
	ar, err := snapshot.NewArchiveReader(r)
	if err != nil {
		return rep, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	m := ar.Manifest
	files, err := extractArchive(ar, dir)
	defer func() {
		for _, p := range files {
			os.Remove(p)
		}
	}()
	if err != nil {
		return rep, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	imgs := map[uint32]*store.Image{}
	defer func() {
		for _, img := range imgs {
			img.Close()
		}
	}()
	for _, g := range m.Groups {
		f, err := os.Open(files[g.Checkpoint.Name])
		if err != nil {
			return rep, err
		}
		img, err := store.OpenImage(f, dir)
		f.Close()
		if err != nil {
			return rep, fmt.Errorf("%w: group %d: %v", ErrBadRequest, g.ID, err)
		}
		imgs[g.ID] = img
		if img.Header.Group != g.ID {
			return rep, fmt.Errorf("%w: %s is a checkpoint of group %d, not of group %d", ErrBadRequest, g.Checkpoint.Name, img.Header.Group, g.ID)
		}
		if err := checkImage(img); err != nil {
			return rep, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if hex.EncodeToString(img.Header.Root[:]) != g.Root {
			return rep, fmt.Errorf("%w: group %d checkpoint root differs from the manifest", ErrBadRequest, g.ID)
		}
		rep.Keys += img.Header.Keys
	}
	if !o.Force {
		kvs, err := n.List(ctx, ListOptions{Limit: 1, KeysOnly: true})
		if err != nil {
			return rep, err
		}
		if len(kvs) > 0 {
			return rep, fmt.Errorf("%w: the cluster already holds keys (%q, ...); restore into a fresh cluster or force", ErrConflict, kvs[0].Key)
		}
	}
	var backupRing ring.State
	if err := json.Unmarshal(m.Ring, &backupRing); err == nil && sameRing(backupRing, l.Ring) {
		rep.Mode = "checkpoint"
		return rep, n.restoreCheckpoints(ctx, m, files, &rep)
	}
	rep.Mode = "rehash"
	return rep, n.restoreRehash(ctx, imgs, &rep)
}

// extractArchive copies every file of the archive into dir, checking each
// against the manifest's size and digest; every listed file must be there.
func extractArchive(ar *snapshot.ArchiveReader, dir string) (map[string]string, error) {
	want := map[string]snapshot.File{}
	for _, g := range ar.Manifest.Groups {
		want[g.Checkpoint.Name], want[g.Tree.Name] = g.Checkpoint, g.Tree
	}
	files := map[string]string{}
	for {
		name, rd, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return files, err
		}
		spec, ok := want[name]
		if !ok {
			return files, fmt.Errorf("archive holds %q, which the manifest does not list", name)
		}
		if _, dup := files[name]; dup {
			return files, fmt.Errorf("archive holds %q twice", name)
		}
		f, err := os.CreateTemp(dir, "restore-*")
		if err != nil {
			return files, err
		}
		files[name] = f.Name()
		h := sha256.New()
		// Checked while it streams: a member longer than the manifest
		// says stops at one byte past it, not at its end.
		size, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rd, spec.Size+1))
		f.Close()
		if err != nil {
			return files, fmt.Errorf("%s: %v", name, err)
		}
		if size > spec.Size {
			return files, fmt.Errorf("%s is longer than the %d bytes the manifest gives it", name, spec.Size)
		}
		if size != spec.Size || hex.EncodeToString(h.Sum(nil)) != spec.SHA256 {
			return files, fmt.Errorf("%s: %d bytes with sha256 %x, manifest says %d bytes with %s", name, size, h.Sum(nil), spec.Size, spec.SHA256)
		}
	}
	for name := range want {
		if _, ok := files[name]; !ok {
			return files, fmt.Errorf("archive lacks %s", name)
		}
	}
	return files, nil
}

// sameRing reports whether two rings route every key to the same group.
func sameRing(a, b ring.State) bool {
	if len(a.Groups) != len(b.Groups) {
		return false
	}
	for i := range a.Groups {
		x, y := a.Groups[i], b.Groups[i]
		if x.ID != y.ID || !slices.Equal(x.Tokens, y.Tokens) {
			return false
		}
	}
	return true
}

func (n *Node) restoreCheckpoints(ctx context.Context, m snapshot.Manifest, files map[string]string, rep *RestoreReport) error {
	for _, g := range m.Groups {
		gid := GroupID(g.ID)
		err := n.retryLeader(ctx, gid, func(leader NodeInfo, self bool) error {
			f, err := os.Open(files[g.Checkpoint.Name])
			if err != nil {
				return err
			}
			defer f.Close()
			if self {
				_, err := n.RestoreCheckpoint(ctx, gid, f)
				return err
			}
			return n.fwd.post(ctx, peerURL(leader.RaftAddr, fmt.Sprintf(RestorePath, gid)), f)
		})
		if err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
		v, err := n.Verify(ctx, gid, VerifyOptions{})
		if err != nil {
			return fmt.Errorf("group %d: verify after restore: %w", g.ID, err)
		}
		rg := RestoredGroup{Group: gid, Keys: g.Keys, BackupRoot: g.Root, Root: v.Root, Index: v.Index}
		rg.Agree = v.Agree && v.Root == g.Root
		rep.Groups = append(rep.Groups, rg)
	}
	rep.Identical = true
	for _, g := range rep.Groups {
		rep.Identical = rep.Identical && g.Agree
	}
	return nil
}

// restoreRehash writes every key of every image through the normal write
// path, so each lands in the group the target's ring gives it, then reads
// the whole key space back and compares digests of the key/value sets.
func (n *Node) restoreRehash(ctx context.Context, imgs map[uint32]*store.Image, rep *RestoreReport) error {
	var backup contentDigest
	type kv struct{ k, v []byte }
	work := make(chan kv, 256)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for i := 0; i < rehashWriters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				if _, _, err := n.Put(ctx, e.k, e.v, WriteOptions{}); err != nil {
					select {
					case errc <- fmt.Errorf("key %q: %w", e.k, err):
					default:
					}
				}
			}
		}()
	}
	var ferr error
	for _, img := range imgs {
		ferr = img.ForEach(func(e store.Entry) error {
			backup.add(e.Key, e.Value)
			select {
			case work <- kv{append([]byte(nil), e.Key...), append([]byte(nil), e.Value...)}:
				return nil
			case err := <-errc:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ferr != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if ferr != nil {
		return ferr
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	var cluster contentDigest
	var after []byte
	for {
		page, err := n.List(ctx, ListOptions{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("reading back: %w", err)
		}
		for _, e := range page {
			cluster.add(e.Key, e.Value)
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Key
	}
	rep.BackupDigest, rep.ClusterDigest = backup.String(), cluster.String()
	rep.ClusterKeys = cluster.n
	rep.Identical = backup == cluster
	return nil
}

// contentDigest covers a set of keys and values, whatever their order or
// modify indexes: the XOR of each pair's digest, and the count.
type contentDigest struct {
	x snapshot.Digest
	n uint64
}

func (c *contentDigest) add(k, v []byte) {
	d := snapshot.EntryDigest(k, v, 0)
	for i := range c.x {
		c.x[i] ^= d[i]
	}
	c.n++
}

func (c contentDigest) String() string { return hex.EncodeToString(c.x[:]) }

// rehashWriters is how many keys a re-hashing restore writes at once: many,
// so that each group's proposer sends them in large Raft batches.
const rehashWriters = 256
