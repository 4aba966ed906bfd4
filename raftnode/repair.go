package raftnode

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/verify"
)

// repair reinstalls replica r's state from its group leader: a replica
// found divergent by a verification at index. The apply stream is paused
// while a checkpoint at least as new as the local state is fetched and
// swapped in (its Merkle root checked first); entries the checkpoint
// already covers are then skipped as replays. Raft itself, and therefore
// the group, keeps running. A divergent leader first hands leadership to
// another replica.
func (n *Node) repair(ctx context.Context, r *replica, index uint64) *api.Repair {
	r.divergences.Add(1)
	n.log.Warn("replica found divergent; reinstalling its state from the leader", "group", uint32(r.id), "verify_index", index)
	rep := n.reinstall(ctx, r)
	if rep.Done {
		r.repairs.Add(1)
		n.log.Info("divergent replica repaired", "group", uint32(r.id), "from", rep.From, "index", rep.Index)
	} else {
		n.log.Error("divergent replica not repaired", "group", uint32(r.id), "err", rep.Error)
	}
	r.lastRepair.Store(rep)
	return rep
}

func (n *Node) reinstall(ctx context.Context, r *replica) *api.Repair {
	fail := func(err error) *api.Repair { return &api.Repair{Error: err.Error()} }
	if r.isLeader() {
		if err := await(ctx, r.raft.LeadershipTransfer()); err != nil {
			return fail(fmt.Errorf("handing leadership over before the repair: %w", err))
		}
	}
	for r.isLeader() || r.leader() == "" || r.leader() == n.cfg.ID {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fail(fmt.Errorf("%w: group %d has no other leader to repair from", base.ErrNoLeader, r.id))
		}
	}
	from := r.leader()
	f, err := os.CreateTemp(r.dir, "repair-*.ckpt")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	r.fsm.mu.Lock()
	defer r.fsm.mu.Unlock()
	applied := r.st.AppliedIndex()
	err = n.fetchCheckpoint(ctx, r.id, applied, func() (io.Writer, error) {
		if err := f.Truncate(0); err != nil {
			return nil, err
		}
		_, err := f.Seek(0, io.SeekStart)
		return f, err
	})
	if err != nil {
		return fail(fmt.Errorf("fetching a checkpoint from %s: %w", from, err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	if err := r.st.Restore(f); err != nil {
		return fail(fmt.Errorf("installing the checkpoint: %w", err))
	}
	return &api.Repair{Done: true, From: from, Index: r.st.AppliedIndex()}
}

// verifyLoop verifies, every VerifyInterval, each group this node leads:
// so each group is checked once per interval, by its leader. Divergent
// replicas are repaired and logged by Verify itself.
func (n *Node) verifyLoop(ctx context.Context) {
	for sleepCtx(ctx, n.cfg.VerifyInterval) {
		for _, r := range n.localReplicas() {
			if !r.isLeader() {
				continue
			}
			vctx, cancel := context.WithTimeout(ctx, max(n.cfg.VerifyInterval, 30*time.Second))
			v, err := n.Verify(vctx, r.id, verify.Options{Deep: true})
			cancel()
			switch {
			case err != nil:
				n.log.Warn("periodic verification failed", "group", uint32(r.id), "err", err)
			case v.Agree:
				n.log.Debug("periodic verification: replicas agree", "group", uint32(r.id), "index", v.Index, "root", v.Root)
			default:
				n.log.Warn("periodic verification: replicas disagree", "group", uint32(r.id), "index", v.Index)
			}
		}
	}
}
