package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/verify"
)

// RestoredGroup and RestoreReport are the API's (one definition for the
// server and the Go client).
type (
	RestoredGroup = api.RestoredGroup
	RestoreReport = api.RestoreReport
)

// Options qualifies a restore.
type Options struct {
	// Force allows restoring into a cluster that already holds keys; in
	// checkpoint mode those are replaced, in rehash mode merged.
	Force bool
}

// Restore loads a backup archive read from r into the cluster, all or
// nothing, one restore at a time in the cluster. It takes the cluster's
// restore lock (a second restore gets ErrConflict), checks every file
// against the manifest and every checkpoint against its Merkle root, then
// fences every group (writes wait), keeps a checkpoint of each as it is,
// installs the backup and verifies it. On any failure after the fence,
// the client going away included, every group touched is put back from
// those checkpoints before the fences lift: the cluster is left as it was,
// and the error says so. Temporary files go under dir.
func Restore(ctx context.Context, c Cluster, dir string, r io.Reader, o Options) (RestoreReport, error) {
	var rep RestoreReport
	l := c.Layout()
	if !l.Initialized {
		return rep, fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	if l.Migration != nil {
		return rep, fmt.Errorf("%w: a ring change is in progress (%s); restore once it is done", base.ErrConflict, l.Migration.Change)
	}
	// The node stopping ends the restore as its client going does.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.Stopping():
			cancel()
		case <-ctx.Done():
		}
	}()
	run, err := c.BeginRestore(ctx, cancel)
	if err != nil {
		return rep, err
	}
	defer run.End()

	ar, err := snapshot.NewArchiveReader(r)
	if err != nil {
		return rep, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	m := ar.Manifest
	files, err := extractArchive(ar, dir)
	defer func() {
		for _, p := range files {
			os.Remove(p)
		}
	}()
	if err != nil {
		return rep, run.Failed(fmt.Errorf("%w: %v", base.ErrBadRequest, err))
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
			return rep, run.Failed(err)
		}
		img, err := store.OpenImage(f, dir)
		f.Close()
		if err != nil {
			return rep, run.Failed(fmt.Errorf("%w: group %d: %v", base.ErrBadRequest, g.ID, err))
		}
		imgs[g.ID] = img
		if img.Header.Group != g.ID {
			return rep, run.Failed(fmt.Errorf("%w: %s is a checkpoint of group %d, not of group %d", base.ErrBadRequest, g.Checkpoint.Name, img.Header.Group, g.ID))
		}
		if err := img.Check(); err != nil {
			return rep, run.Failed(fmt.Errorf("%w: %v", base.ErrBadRequest, err))
		}
		if hex.EncodeToString(img.Header.Root[:]) != g.Root {
			return rep, run.Failed(fmt.Errorf("%w: group %d checkpoint root differs from the manifest", base.ErrBadRequest, g.ID))
		}
		rep.Keys += img.Header.Keys
	}
	if !o.Force {
		kvs, err := c.List(ctx, nil, 1, true)
		if err != nil {
			return rep, run.Failed(base.ReadError(err))
		}
		if len(kvs) > 0 {
			return rep, run.Failed(fmt.Errorf("%w: the cluster already holds keys (%q, ...); restore into a fresh cluster or force", base.ErrConflict, kvs[0].Key))
		}
	}
	// A fenced group lists none of its keys: look before the fences.
	if err := run.FenceAll(ctx, dir); err != nil {
		return rep, run.Failed(err)
	}
	var backupRing ring.State
	if json.Unmarshal(m.Ring, &backupRing) == nil && sameRing(backupRing, run.Layout().Ring) {
		rep.Mode = "checkpoint"
		err = restoreCheckpoints(ctx, c, run, m, files, &rep)
	} else {
		rep.Mode = "rehash"
		err = restoreRehash(ctx, c, run, imgs, o.Force, &rep)
	}
	if err != nil {
		return rep, run.Failed(err)
	}
	return rep, nil
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

func restoreCheckpoints(ctx context.Context, c Cluster, run Run, m snapshot.Manifest, files map[string]string, rep *RestoreReport) error {
	for _, g := range m.Groups {
		gid := base.GroupID(g.ID)
		if err := c.BeforeInstall(gid); err != nil {
			return err
		}
		if err := run.Install(ctx, gid, files[g.Checkpoint.Name]); err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
		v, err := c.Verify(ctx, gid, verify.Options{})
		if ctx.Err() != nil {
			return fmt.Errorf("%w: the restore was cancelled (its client went away, or the node is stopping)", base.ErrUnavailable)
		}
		if err != nil {
			return fmt.Errorf("group %d: verify after restore: %w", g.ID, err)
		}
		rg := RestoredGroup{Group: gid, Keys: g.Keys, BackupRoot: g.Root, Root: v.Root, Index: v.Index}
		rg.Agree = v.Agree && v.Root == g.Root
		if !rg.Agree {
			return fmt.Errorf("group %d: after the restore its replicas hold root %s (agree: %v), the backup %s", g.ID, short(v.Root), v.Agree, short(g.Root))
		}
		rep.Groups = append(rep.Groups, rg)
	}
	rep.Identical = true
	return nil
}

// restoreRehash ingests every key of every image into the group the
// target's ring gives it, with its indexes, then reads the whole key space
// back and compares digests of the key/value sets: into an empty cluster
// they must be equal. With force the keys are merged into what is there.
func restoreRehash(ctx context.Context, c Cluster, run Run, imgs map[uint32]*store.Image, force bool, rep *RestoreReport) error {
	var backup contentDigest
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queues := map[base.GroupID]chan []store.MovedEntry{}
	var wg sync.WaitGroup
	for _, g := range run.Layout().Groups {
		q := make(chan []store.MovedEntry, 2)
		queues[g.ID] = q
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range q {
				if err := run.Ingest(ctx, g.ID, batch); err != nil {
					cancel(fmt.Errorf("group %d: %w", g.ID, err))
					for range q {
					}
					return
				}
			}
		}()
	}
	pending := map[base.GroupID][]store.MovedEntry{}
	sizes := map[base.GroupID]int{}
	flush := func(g base.GroupID) error {
		select {
		case queues[g] <- pending[g]:
			pending[g], sizes[g] = nil, 0
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	var ferr error
	for _, img := range imgs {
		ferr = img.ForEach(func(e store.Entry) error {
			backup.add(e.Key, e.Value)
			g, err := run.Layout().Route(e.Key)
			if err != nil {
				return err
			}
			pending[g] = append(pending[g], store.MovedEntry{Key: append([]byte(nil), e.Key...), Value: append([]byte(nil), e.Value...),
				CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex})
			sizes[g] += len(e.Key) + len(e.Value) + 32
			if len(pending[g]) >= store.MaxIngest || sizes[g] >= rehashBatchBytes {
				return flush(g)
			}
			return nil
		})
		if ferr != nil {
			break
		}
	}
	for g := range pending {
		if ferr == nil && len(pending[g]) > 0 {
			ferr = flush(g)
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if ferr == nil {
		ferr = context.Cause(ctx)
	}
	if ferr != nil {
		return ferr
	}
	var cluster contentDigest
	var after []byte
	for {
		page, err := c.List(ctx, after, 1000, false)
		if err != nil {
			return fmt.Errorf("reading back: %w", base.ReadError(err))
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
	if !rep.Identical && !force {
		return fmt.Errorf("read back, the cluster holds %d keys with digest %s, the backup %d with %s",
			cluster.n, short(rep.ClusterDigest), backup.n, short(rep.BackupDigest))
	}
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

// rehashBatchBytes bounds the keys and values of one ingest a re-hashing
// restore sends, below the limit on a forwarded request.
const rehashBatchBytes = 4 << 20

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
