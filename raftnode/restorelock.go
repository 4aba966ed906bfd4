package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/store"
)

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
	n     *Node
	fence RestoreFence
	at    *layout.Layout // the layout once the lock showed here: its groups are fixed while it is held
	dir   string

	mu      sync.Mutex
	fenced  []base.GroupID
	pre     map[base.GroupID]string // each group's checkpoint as it was, once fenced
	touched map[base.GroupID]bool   // groups an install or ingest was sent to
	lost    error                   // why the lock was lost, if it was

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
	if _, err := n.do(ctx, protocol.Request{Op: protocol.OpRestoreLock, Group: base.MetaGroup, Restore: id, RestoreStep: protocol.RestoreBegin, Node: &layout.NodeInfo{ID: n.cfg.ID}}); err != nil {
		// Were it taken after all, unrenewed it is released.
		return nil, err
	}
	run := &restoreRun{n: n, fence: RestoreFence{ID: id}, pre: map[base.GroupID]string{}, touched: map[base.GroupID]bool{}, renewed: make(chan struct{})}
	rctx, stop := context.WithCancel(context.Background())
	run.stopRenew = stop
	go run.renew(rctx, cancel)
	for {
		changed := n.meta.meta.Changed()
		if l := n.Layout(); l.Restore != nil && l.Restore.ID == id {
			run.at = l
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			run.End()
			return nil, fmt.Errorf("%w: the restore lock was taken but this node's layout did not show it: %v", base.ErrUnavailable, ctx.Err())
		}
	}
	run.fence.Term = n.meta.raft.CurrentTerm()
	return run, nil
}

// Layout is the layout the lock was taken under.
func (run *restoreRun) Layout() *layout.Layout { return run.at }

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
		_, err := run.n.do(rctx, protocol.Request{Op: protocol.OpRestoreLock, Group: base.MetaGroup, Restore: run.fence.ID, RestoreStep: protocol.RestoreRenew})
		done()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			last = time.Now()
			continue
		}
		if errors.Is(err, base.ErrConflict) || time.Since(last) > restoreGiveUp {
			run.mu.Lock()
			run.lost = fmt.Errorf("the restore lock was lost: %v", err)
			run.mu.Unlock()
			run.n.log.Error("restore: lock lost; stopping", "restore", run.fence.ID, "err", err)
			cancel()
			return
		}
	}
}

// FenceAll fences every group for the restore, and keeps a checkpoint of each
// taken after its fence, as it was, to put it back from.
func (run *restoreRun) FenceAll(ctx context.Context, dir string) error {
	n := run.n
	for _, g := range run.at.Groups {
		run.mu.Lock()
		run.fenced = append(run.fenced, g.ID)
		run.mu.Unlock()
		resp, err := n.do(ctx, protocol.Request{Op: protocol.OpFence, Group: g.ID, Ranges: wholeRing, Term: run.fence.Term, Restore: run.fence.ID})
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

// Install replaces group g's state by the checkpoint at path, fenced.
func (run *restoreRun) Install(ctx context.Context, g base.GroupID, path string) error {
	run.mu.Lock()
	run.touched[g] = true
	run.mu.Unlock()
	n := run.n
	return n.retryLeader(ctx, g, func(leader layout.NodeInfo, self bool) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if self {
			_, err := n.RestoreCheckpoint(ctx, g, f, run.fence)
			return err
		}
		return n.fwd.Post(ctx, protocol.PeerURL(leader.RaftAddr, fmt.Sprintf(RestorePath, g))+run.fence.query(), f)
	})
}

// Ingest writes entries into group g, fenced as it is.
func (run *restoreRun) Ingest(ctx context.Context, g base.GroupID, entries []store.MovedEntry) error {
	run.mu.Lock()
	run.touched[g] = true
	run.mu.Unlock()
	_, err := run.n.do(ctx, protocol.Request{Op: protocol.OpIngest, Group: g, Ranges: wholeRing, Entries: entries, Term: run.fence.Term, Restore: run.fence.ID})
	return err
}

// Failed puts every group the restore touched back as it was and returns
// cause, saying what state the cluster is in.
func (run *restoreRun) Failed(cause error) error {
	run.mu.Lock()
	if run.lost != nil {
		cause = fmt.Errorf("%w (%v)", cause, run.lost)
	}
	var touched []base.GroupID
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
		if err := run.Install(ctx, g, run.pre[g]); err != nil {
			run.n.log.Error("restore: putting a group back failed", "restore", run.fence.ID, "group", uint32(g), "err", err)
			return fmt.Errorf("%w; putting group %d back as it was failed too (%v): of groups %v, some may hold the backup's data", cause, g, err, touched)
		}
	}
	run.n.log.Warn("restore failed; every group it touched was put back", "restore", run.fence.ID, "groups", touched, "err", cause)
	return fmt.Errorf("%w; groups %v were put back as they were: the cluster is as it was", cause, touched)
}

// End lifts the restore's fences, releases the lock and removes the
// checkpoints kept. Should a fence not lift, the lock stays held, and the
// metadata leader lifts the fences when it releases it.
func (run *restoreRun) End() {
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
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: g, Ranges: wholeRing, Term: run.fence.Term, Restore: run.fence.ID}); err != nil {
			n.log.Error("restore: lifting a fence failed; the metadata leader will once the lock lapses", "restore", run.fence.ID, "group", uint32(g), "err", err)
			return
		}
	}
	if _, err := n.do(ctx, protocol.Request{Op: protocol.OpRestoreLock, Group: base.MetaGroup, Restore: run.fence.ID, RestoreStep: protocol.RestoreEnd}); err != nil {
		n.log.Error("restore: releasing the lock failed; it lapses", "restore", run.fence.ID, "err", err)
	}
}

// restoreJanitor, on the metadata leader, releases a restore lock that was
// not renewed for restoreLockTTL, its node having died or lost touch: it
// lifts the restore's fences from every group, then ends the lock.
func (n *Node) restoreJanitor(ctx context.Context) {
	var seen layout.RestoreLock
	var since time.Time
	for {
		changed := n.meta.meta.Changed()
		l := n.Layout()
		switch {
		case l.Restore == nil || !n.meta.isLeader():
			seen = layout.RestoreLock{}
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

func (n *Node) releaseRestore(ctx context.Context, l *layout.Layout, id string) error {
	ctx, cancel := context.WithTimeout(ctx, restoreLockTTL)
	defer cancel()
	term := n.meta.raft.CurrentTerm()
	for _, g := range l.Groups {
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: g.ID, Ranges: wholeRing, Term: term, Restore: id}); err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
	}
	_, err := n.do(ctx, protocol.Request{Op: protocol.OpRestoreLock, Group: base.MetaGroup, Restore: id, RestoreStep: protocol.RestoreEnd})
	return err
}
