package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// CheckpointPath is the internal endpoint serving a group leader's
// checkpoint (printf pattern: the group id).
const CheckpointPath = "/v1/internal/groups/%d/checkpoint"

// RestorePath is the internal endpoint where a group leader takes a
// checkpoint to restore through Raft (printf pattern: the group id).
const RestorePath = "/v1/internal/groups/%d/restore"

// Checkpoint opens a checkpoint of group g, which this node must lead. It
// is taken after a linearizable barrier, so it holds every write
// acknowledged before the call, and at an index of at least minIndex. The
// caller writes it with WriteTo and must Release it.
func (n *Node) Checkpoint(ctx context.Context, g base.GroupID, minIndex uint64) (*store.Snapshot, error) {
	r := n.replica(g)
	if r == nil || r.st == nil {
		return nil, &base.NotLeaderError{Group: g, Leader: n.leaderOf(g)}
	}
	if err := r.readBarrier(ctx, protocol.Linearizable); err != nil {
		return nil, err
	}
	if err := r.waitApplied(ctx, minIndex); err != nil {
		return nil, err
	}
	for r.st.AppliedIndex() < minIndex {
		// minIndex is past the commit index the barrier saw: wait for it.
		select {
		case <-r.st.Changed():
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: group %d did not reach index %d", base.ErrUnavailable, g, minIndex)
		}
	}
	return r.st.Snapshot()
}

// fetchCheckpoint writes a checkpoint of group g, at an index of at least
// minIndex, to the writer dst gives: taken here when this node leads g,
// else fetched from the leader. It follows leadership changes until ctx
// ends, asking dst for a fresh writer on each attempt.
func (n *Node) fetchCheckpoint(ctx context.Context, g base.GroupID, minIndex uint64, dst func() (io.Writer, error)) error {
	return n.retryLeader(ctx, g, func(leader layout.NodeInfo, self bool) error {
		w, err := dst()
		if err != nil {
			return err
		}
		if self {
			sn, err := n.Checkpoint(ctx, g, minIndex)
			if err != nil {
				return err
			}
			defer sn.Release()
			_, err = sn.WriteTo(w)
			return err
		}
		u := protocol.PeerURL(leader.RaftAddr, fmt.Sprintf(CheckpointPath, g)) + "?min_index=" + strconv.FormatUint(minIndex, 10)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		return n.fwd.Stream(req, w)
	})
}

// retryLeader runs fn against group g's leader, following NotLeader
// answers and waiting out elections, until fn succeeds, fails otherwise,
// or ctx ends. fn must not have written anything when it fails with a
// leadership error.
func (n *Node) retryLeader(ctx context.Context, g base.GroupID, fn func(leader layout.NodeInfo, self bool) error) error {
	var last error
	for {
		leader := n.leaderOf(g)
		if leader == "" {
			last = fmt.Errorf("%w: group %d", base.ErrNoLeader, g)
		} else if info, ok := n.Layout().Node(leader); !ok {
			last = fmt.Errorf("%w: group %d leader %s not in the layout", base.ErrNoLeader, g, leader)
		} else {
			err := fn(info, leader == n.cfg.ID)
			var nl *base.NotLeaderError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &nl):
				n.setHint(g, nl.Leader)
			case errors.Is(err, base.ErrNoLeader):
			default:
				return err
			}
			last = err
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return last
		}
	}
}

// RestoreCheckpoint replaces group g's whole state with the checkpoint in
// r, through Raft: this node must lead g. The checkpoint is checked
// (digest, entries against its Merkle root) before anything changes, then
// rebased onto an index past the group's log, so every replica installs
// it as a snapshot and no later entry is mistaken for a replay. It returns
// the index the group now restarts from. Only a cluster restore holding the
// restore lock installs checkpoints, and the group stays fenced for it.
func (n *Node) RestoreCheckpoint(ctx context.Context, g base.GroupID, rd io.Reader, fence RestoreFence) (uint64, error) {
	r := n.replica(g)
	if r == nil || r.st == nil || !r.isLeader() {
		return 0, &base.NotLeaderError{Group: g, Leader: n.leaderOf(g)}
	}
	if err := layout.CheckRestoreID(fence.ID); err != nil {
		return 0, err
	}
	if err := n.checkRestoreMover(ctx, protocol.Request{Op: protocol.OpFence, Ranges: wholeRing, Term: fence.Term, Restore: fence.ID}); err != nil {
		return 0, err
	}
	img, err := store.OpenImage(rd, r.dir)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	defer img.Close()
	if img.Header.Group != uint32(g) {
		return 0, fmt.Errorf("%w: a checkpoint of group %d cannot restore group %d", base.ErrBadRequest, img.Header.Group, g)
	}
	if err := img.Check(); err != nil {
		return 0, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	// Far enough past the log that concurrent appends cannot catch up
	// before raft takes the snapshot, and past every modify index in the
	// image, so no later write can reuse one.
	start := max(r.raft.LastIndex(), img.Header.Index) + 1<<20
	f, err := os.CreateTemp(r.dir, "restore-*.ckpt")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h, err := img.RebaseFenced(start, r.raft.CurrentTerm(), fence.Term, f)
	if err != nil {
		return 0, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: start - 1, Term: h.Term, Size: size}
	if err := r.raft.Restore(meta, f, enqueueTimeout(ctx)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, r.notLeader()
		}
		return 0, fmt.Errorf("%w: group %d: restore: %v", base.ErrUnavailable, g, err)
	}
	if got := r.st.AppliedIndex(); got != start {
		return 0, fmt.Errorf("group %d: restored state at index %d, expected %d", g, got, start)
	}
	return start, nil
}

// ServeCheckpoint writes a checkpoint of group g (see Checkpoint) to the
// writer start returns; start is called only once the checkpoint is open,
// so an error before it can still be answered as an error.
func (n *Node) ServeCheckpoint(ctx context.Context, g base.GroupID, minIndex uint64, start func(h snapshot.Header) io.Writer) error {
	sn, err := n.Checkpoint(ctx, g, minIndex)
	if err != nil {
		return err
	}
	defer sn.Release()
	// The header, sent first, gives the image's size: compact first.
	if err := sn.Compact(); err != nil {
		return err
	}
	_, err = sn.WriteTo(start(sn.Header()))
	return err
}
