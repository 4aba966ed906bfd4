package raftnode

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// Restore loads a backup archive read from r into the cluster, all or
// nothing, one restore at a time in the cluster. It takes the cluster's
// restore lock (a second restore gets ErrConflict), checks every file
// against the manifest and every checkpoint against its Merkle root, then
// fences every group (writes wait), keeps a checkpoint of each as it is,
// installs the backup and verifies it. On any failure after the fence,
// the client going away included, every group touched is put back from
// those checkpoints before the fences lift: the cluster is left as it was,
// and the error says so. Temporary files go under dir.
func (n *Node) Restore(ctx context.Context, dir string, r io.Reader, o RestoreOptions) (RestoreReport, error) {
	var rep RestoreReport
	l := n.Layout()
	if !l.Initialized {
		return rep, fmt.Errorf("%w: cluster layout not initialised yet", ErrUnavailable)
	}
	if l.Migration != nil {
		return rep, fmt.Errorf("%w: a ring change is in progress (%s); restore once it is done", ErrConflict, l.Migration.Change)
	}
	// The node stopping ends the restore as its client going does.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	run, err := n.beginRestore(ctx, cancel)
	if err != nil {
		return rep, err
	}
	defer run.end()

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
		return rep, run.failed(fmt.Errorf("%w: %v", ErrBadRequest, err))
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
			return rep, run.failed(err)
		}
		img, err := store.OpenImage(f, dir)
		f.Close()
		if err != nil {
			return rep, run.failed(fmt.Errorf("%w: group %d: %v", ErrBadRequest, g.ID, err))
		}
		imgs[g.ID] = img
		if img.Header.Group != g.ID {
			return rep, run.failed(fmt.Errorf("%w: %s is a checkpoint of group %d, not of group %d", ErrBadRequest, g.Checkpoint.Name, img.Header.Group, g.ID))
		}
		if err := checkImage(img); err != nil {
			return rep, run.failed(fmt.Errorf("%w: %v", ErrBadRequest, err))
		}
		if hex.EncodeToString(img.Header.Root[:]) != g.Root {
			return rep, run.failed(fmt.Errorf("%w: group %d checkpoint root differs from the manifest", ErrBadRequest, g.ID))
		}
		rep.Keys += img.Header.Keys
	}
	if !o.Force {
		kvs, err := n.List(ctx, ListOptions{Limit: 1, KeysOnly: true})
		if err != nil {
			return rep, run.failed(readError(err))
		}
		if len(kvs) > 0 {
			return rep, run.failed(fmt.Errorf("%w: the cluster already holds keys (%q, ...); restore into a fresh cluster or force", ErrConflict, kvs[0].Key))
		}
	}
	// A fenced group lists none of its keys: look before the fences.
	if err := run.fenceAll(ctx, dir); err != nil {
		return rep, run.failed(err)
	}
	var backupRing ring.State
	if json.Unmarshal(m.Ring, &backupRing) == nil && sameRing(backupRing, run.layout.Ring) {
		rep.Mode = "checkpoint"
		err = n.restoreCheckpoints(ctx, run, m, files, &rep)
	} else {
		rep.Mode = "rehash"
		err = n.restoreRehash(ctx, run, imgs, o.Force, &rep)
	}
	if err != nil {
		return rep, run.failed(err)
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

func (n *Node) restoreCheckpoints(ctx context.Context, run *restoreRun, m snapshot.Manifest, files map[string]string, rep *RestoreReport) error {
	for _, g := range m.Groups {
		gid := GroupID(g.ID)
		if hook := n.cfg.OnRestoreInstall; hook != nil {
			if err := hook(gid); err != nil {
				return err
			}
		}
		if err := run.install(ctx, gid, files[g.Checkpoint.Name]); err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
		v, err := n.Verify(ctx, gid, VerifyOptions{})
		if ctx.Err() != nil {
			return fmt.Errorf("%w: the restore was cancelled (its client went away, or the node is stopping)", ErrUnavailable)
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
func (n *Node) restoreRehash(ctx context.Context, run *restoreRun, imgs map[uint32]*store.Image, force bool, rep *RestoreReport) error {
	var backup contentDigest
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queues := map[GroupID]chan []store.MovedEntry{}
	var wg sync.WaitGroup
	for _, g := range run.layout.Groups {
		q := make(chan []store.MovedEntry, 2)
		queues[g.ID] = q
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range q {
				if err := run.ingest(ctx, g.ID, batch); err != nil {
					cancel(fmt.Errorf("group %d: %w", g.ID, err))
					for range q {
					}
					return
				}
			}
		}()
	}
	pending := map[GroupID][]store.MovedEntry{}
	sizes := map[GroupID]int{}
	flush := func(g GroupID) error {
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
			g, err := run.layout.Route(e.Key)
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
		page, err := n.List(ctx, ListOptions{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("reading back: %w", readError(err))
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

// The restore lock's lease: the running node renews it every
// restoreRenewEvery; it stops its own restore when it could not for
// restoreGiveUp, well before the metadata leader releases a lock not renewed
// for restoreLockTTL (its node died), so the two never act at once.
const (
	restoreRenewEvery = 5 * time.Second
	restoreGiveUp     = 30 * time.Second
	restoreLockTTL    = 60 * time.Second
	// restorePutBack bounds putting the groups back after a failure, and
	// lifting the fences, once the restore's own context has ended.
	restorePutBack = 10 * time.Minute
)

// RestoreFence names the restore a checkpoint is installed for, and the
// metadata term its fences carry: the group installing it stays fenced
// until that restore lifts the fence.
type RestoreFence struct {
	ID   string
	Term uint64
}

// query is the fence as the internal restore endpoint's query string.
func (f RestoreFence) query() string {
	return fmt.Sprintf("?restore=%s&fence_term=%d", f.ID, f.Term)
}

// restoreRun is one restore holding the cluster's restore lock.
type restoreRun struct {
	n      *Node
	fence  RestoreFence
	layout *Layout // the layout once the lock showed here: its groups are fixed while it is held
	dir    string

	mu      sync.Mutex
	fenced  []GroupID
	pre     map[GroupID]string // each group's checkpoint as it was, once fenced
	touched map[GroupID]bool   // groups an install or ingest was sent to
	lost    error              // why the lock was lost, if it was

	stopRenew context.CancelFunc
	renewed   chan struct{}
}

// beginRestore takes the restore lock, waits until this node's layout
// shows it, and renews it until end; cancel is called if the lock is lost.
func (n *Node) beginRestore(ctx context.Context, cancel context.CancelFunc) (*restoreRun, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b[:])
	if _, err := n.do(ctx, Request{Op: opRestoreLock, Group: MetaGroup, Restore: id, RestoreStep: restoreBegin, Node: &NodeInfo{ID: n.cfg.ID}}); err != nil {
		// Were it taken after all, unrenewed it is released.
		return nil, err
	}
	run := &restoreRun{n: n, fence: RestoreFence{ID: id}, pre: map[GroupID]string{}, touched: map[GroupID]bool{}, renewed: make(chan struct{})}
	rctx, stop := context.WithCancel(context.Background())
	run.stopRenew = stop
	go run.renew(rctx, cancel)
	for {
		changed := n.meta.meta.Changed()
		if l := n.Layout(); l.Restore != nil && l.Restore.ID == id {
			run.layout = l
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			run.end()
			return nil, fmt.Errorf("%w: the restore lock was taken but this node's layout did not show it: %v", ErrUnavailable, ctx.Err())
		}
	}
	run.fence.Term = n.meta.raft.CurrentTerm()
	return run, nil
}

func (run *restoreRun) renew(ctx context.Context, cancel context.CancelFunc) {
	defer close(run.renewed)
	last := time.Now()
	t := time.NewTicker(restoreRenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, done := context.WithTimeout(ctx, restoreRenewEvery)
		_, err := run.n.do(rctx, Request{Op: opRestoreLock, Group: MetaGroup, Restore: run.fence.ID, RestoreStep: restoreRenew})
		done()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			last = time.Now()
			continue
		}
		if errors.Is(err, ErrConflict) || time.Since(last) > restoreGiveUp {
			run.mu.Lock()
			run.lost = fmt.Errorf("the restore lock was lost: %v", err)
			run.mu.Unlock()
			run.n.log.Error("restore: lock lost; stopping", "restore", run.fence.ID, "err", err)
			cancel()
			return
		}
	}
}

// fenceAll fences every group for the restore, and keeps a checkpoint of each
// taken after its fence, as it was, to put it back from.
func (run *restoreRun) fenceAll(ctx context.Context, dir string) error {
	n := run.n
	for _, g := range run.layout.Groups {
		run.mu.Lock()
		run.fenced = append(run.fenced, g.ID)
		run.mu.Unlock()
		resp, err := n.do(ctx, Request{Op: opFence, Group: g.ID, Ranges: wholeRing, Term: run.fence.Term, Restore: run.fence.ID})
		if err != nil {
			return fmt.Errorf("fencing group %d: %w", g.ID, err)
		}
		f, err := os.CreateTemp(dir, fmt.Sprintf("restore-before-%d-*.ckpt", g.ID))
		if err != nil {
			return err
		}
		run.mu.Lock()
		run.pre[g.ID] = f.Name()
		run.mu.Unlock()
		err = n.fetchCheckpoint(ctx, g.ID, resp.RaftIndex, func() (io.Writer, error) {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			return f, f.Truncate(0)
		})
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("keeping group %d as it was: %w", g.ID, err)
		}
	}
	return nil
}

// install replaces group g's state by the checkpoint at path, fenced.
func (run *restoreRun) install(ctx context.Context, g GroupID, path string) error {
	run.mu.Lock()
	run.touched[g] = true
	run.mu.Unlock()
	n := run.n
	return n.retryLeader(ctx, g, func(leader NodeInfo, self bool) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if self {
			_, err := n.RestoreCheckpoint(ctx, g, f, run.fence)
			return err
		}
		return n.fwd.post(ctx, peerURL(leader.RaftAddr, fmt.Sprintf(RestorePath, g))+run.fence.query(), f)
	})
}

// ingest writes entries into group g, fenced as it is.
func (run *restoreRun) ingest(ctx context.Context, g GroupID, entries []store.MovedEntry) error {
	run.mu.Lock()
	run.touched[g] = true
	run.mu.Unlock()
	_, err := run.n.do(ctx, Request{Op: opIngest, Group: g, Ranges: wholeRing, Entries: entries, Term: run.fence.Term, Restore: run.fence.ID})
	return err
}

// failed puts every group the restore touched back as it was and returns
// cause, saying what state the cluster is in.
func (run *restoreRun) failed(cause error) error {
	run.mu.Lock()
	if run.lost != nil {
		cause = fmt.Errorf("%w (%v)", cause, run.lost)
	}
	var touched []GroupID
	for g := range run.touched {
		touched = append(touched, g)
	}
	run.mu.Unlock()
	slices.Sort(touched)
	if len(touched) == 0 {
		return fmt.Errorf("%w; the restore changed nothing: the cluster is as it was", cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), restorePutBack)
	defer cancel()
	for _, g := range touched {
		if err := run.install(ctx, g, run.pre[g]); err != nil {
			run.n.log.Error("restore: putting a group back failed", "restore", run.fence.ID, "group", uint32(g), "err", err)
			return fmt.Errorf("%w; putting group %d back as it was failed too (%v): of groups %v, some may hold the backup's data", cause, g, err, touched)
		}
	}
	run.n.log.Warn("restore failed; every group it touched was put back", "restore", run.fence.ID, "groups", touched, "err", cause)
	return fmt.Errorf("%w; groups %v were put back as they were: the cluster is as it was", cause, touched)
}

// end lifts the restore's fences, releases the lock and removes the
// checkpoints kept. Should a fence not lift, the lock stays held, and the
// metadata leader lifts the fences when it releases it.
func (run *restoreRun) end() {
	run.stopRenew()
	<-run.renewed
	ctx, cancel := context.WithTimeout(context.Background(), restorePutBack)
	defer cancel()
	n := run.n
	defer func() {
		for _, p := range run.pre {
			os.Remove(p)
		}
	}()
	for _, g := range run.fenced {
		if _, err := n.do(ctx, Request{Op: opUnfence, Group: g, Ranges: wholeRing, Term: run.fence.Term, Restore: run.fence.ID}); err != nil {
			n.log.Error("restore: lifting a fence failed; the metadata leader will once the lock lapses", "restore", run.fence.ID, "group", uint32(g), "err", err)
			return
		}
	}
	if _, err := n.do(ctx, Request{Op: opRestoreLock, Group: MetaGroup, Restore: run.fence.ID, RestoreStep: restoreEnd}); err != nil {
		n.log.Error("restore: releasing the lock failed; it lapses", "restore", run.fence.ID, "err", err)
	}
}

// restoreJanitor, on the metadata leader, releases a restore lock that was
// not renewed for restoreLockTTL, its node having died or lost touch: it
// lifts the restore's fences from every group, then ends the lock.
func (n *Node) restoreJanitor(ctx context.Context) {
	var seen RestoreLock
	var since time.Time
	for {
		changed := n.meta.meta.Changed()
		l := n.Layout()
		switch {
		case l.Restore == nil || !n.meta.isLeader():
			seen = RestoreLock{}
		case *l.Restore != seen:
			seen, since = *l.Restore, time.Now()
		case time.Since(since) > restoreLockTTL:
			n.log.Warn("restore: releasing a lock not renewed", "restore", seen.ID, "holder", seen.Node, "for", time.Since(since).Round(time.Second))
			if err := n.releaseRestore(ctx, l, seen.ID); err != nil && ctx.Err() == nil {
				n.log.Warn("restore: releasing the lock: will retry", "restore", seen.ID, "err", err)
			}
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

func (n *Node) releaseRestore(ctx context.Context, l *Layout, id string) error {
	ctx, cancel := context.WithTimeout(ctx, restoreLockTTL)
	defer cancel()
	term := n.meta.raft.CurrentTerm()
	for _, g := range l.Groups {
		if _, err := n.do(ctx, Request{Op: opUnfence, Group: g.ID, Ranges: wholeRing, Term: term, Restore: id}); err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
	}
	_, err := n.do(ctx, Request{Op: opRestoreLock, Group: MetaGroup, Restore: id, RestoreStep: restoreEnd})
	return err
}
