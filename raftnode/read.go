package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// readBarrier returns once the local state machine may serve a read at
// consistency c. For Linearizable it follows the order that keeps a deposed
// leader from answering:
//  1. the leader has committed an entry in its current term (a barrier);
//  2. record the commit index;
//  3. confirm leadership with a quorum (VerifyLeader);
//  4. check the term did not change meanwhile;
//  5. wait until the state machine has applied the recorded index.
func (r *replica) readBarrier(ctx context.Context, c protocol.Consistency) error {
	if r.closed.Load() {
		return base.ErrShutdown
	}
	if c == protocol.Stale || brokenStaleReads {
		return nil
	}
	commit, err := r.readIndex(ctx, c)
	if err != nil {
		return err
	}
	return r.waitApplied(ctx, commit)
}

// readIndex runs steps 1 to 4 of readBarrier on the leader and returns the
// index a read at consistency c must see: every entry committed before
// the call is at or below it.
func (r *replica) readIndex(ctx context.Context, c protocol.Consistency) (uint64, error) {
	if r.closed.Load() {
		return 0, base.ErrShutdown
	}
	if !r.isLeader() {
		return 0, r.notLeader()
	}
	term := r.raft.CurrentTerm()
	if err := r.ensureTermCommitted(ctx, term); err != nil {
		return 0, err
	}
	commit := r.raft.CommitIndex()
	if !(c == protocol.Lease && r.leaseValid(term)) {
		start := time.Now()
		if err := await(ctx, r.raft.VerifyLeader()); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				return 0, r.notLeader()
			}
			if ctx.Err() != nil {
				return 0, fmt.Errorf("%w: group %d: leadership not confirmed in time", base.ErrUnavailable, r.id)
			}
			return 0, fmt.Errorf("%w: group %d: %v", base.ErrUnavailable, r.id, err)
		}
		r.extendLease(term, start)
	}
	if r.raft.CurrentTerm() != term {
		return 0, r.notLeader()
	}
	return commit, nil
}

// ensureTermCommitted runs a barrier once per term, so that entries of
// earlier terms are committed and applied before the first read of the term.
func (r *replica) ensureTermCommitted(ctx context.Context, term uint64) error {
	if r.readyTerm.Load() == term {
		return nil
	}
	r.barrierMu.Lock()
	defer r.barrierMu.Unlock()
	if r.readyTerm.Load() == term {
		return nil
	}
	if err := await(ctx, r.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			// A leadership transfer ends within an election timeout:
			// the caller retries, on the new leader.
			return r.notLeader()
		}
		return fmt.Errorf("%w: group %d: barrier: %v", base.ErrUnavailable, r.id, err)
	}
	if r.raft.CurrentTerm() != term {
		return r.notLeader()
	}
	r.readyTerm.Store(term)
	return nil
}

// leaseDuration is how long a quorum confirmation lets a leader serve lease
// reads: followers wait at least the heartbeat timeout before campaigning,
// less a margin for clock drift.
func (r *replica) leaseDuration() time.Duration {
	return r.node.cfg.Timing.Heartbeat * 3 / 4
}

func (r *replica) leaseValid(term uint64) bool {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	return r.leaseTerm == term && time.Now().Before(r.leaseUntil)
}

func (r *replica) extendLease(term uint64, confirmedAt time.Time) {
	until := confirmedAt.Add(r.leaseDuration())
	r.leaseMu.Lock()
	if r.leaseTerm != term || until.After(r.leaseUntil) {
		r.leaseTerm, r.leaseUntil = term, until
	}
	r.leaseMu.Unlock()
}

// waitApplied waits until the state machine reflects every entry up to
// index. Entries that never reach the state machine (no-ops, barriers) are
// recognised in the log, since the store's own index only moves on commands
// and configuration changes.
func (r *replica) waitApplied(ctx context.Context, index uint64) error {
	if r.st.AppliedIndex() >= index {
		return nil
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := r.st.Changed()
		applied := r.st.AppliedIndex()
		if applied >= index {
			return nil
		}
		if r.raft.AppliedIndex() >= index && !r.statefulEntries(applied+1, index) {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: group %d: state machine did not reach index %d in time", base.ErrUnavailable, r.id, index)
		}
	}
}

// statefulEntries reports whether any entry in [lo, hi] reaches the state
// machine. An entry missing from the log was compacted into a snapshot,
// which the state machine already covers.
func (r *replica) statefulEntries(lo, hi uint64) bool {
	return r.entriesOfType(lo, hi, 64, raft.LogCommand, raft.LogConfiguration)
}

// entriesOfType reports whether any entry in [lo, hi] has one of types;
// past limit entries it answers yes without looking. An entry missing from
// the log was compacted into a snapshot.
func (r *replica) entriesOfType(lo, hi, limit uint64, types ...raft.LogType) bool {
	if hi-lo > limit {
		return true
	}
	var l raft.Log
	for i := hi; i >= lo && i > 0; i-- {
		if err := r.cache.GetLog(i, &l); err != nil {
			continue
		}
		if slices.Contains(types, l.Type) {
			return true
		}
	}
	return false
}

// currentLayout returns this node's layout and the metadata index it
// reflects, once that covers every metadata entry committed before the
// call: the metadata leader names the index as it would for a read at
// consistency c, and this node waits to have applied it. A stale read
// takes the layout as it is.
func (n *Node) currentLayout(ctx context.Context, c protocol.Consistency) (*layout.Layout, uint64, error) {
	if c != protocol.Stale && !brokenStaleReads {
		resp, err := n.do(ctx, protocol.Request{Op: protocol.OpLayoutIndex, Group: base.MetaGroup, Consistency: c})
		switch {
		case err == nil:
			if err := n.waitLayout(ctx, resp.RaftIndex); err != nil {
				return nil, 0, err
			}
		case n.olderMetaLeader(err):
			// During a rolling upgrade the metadata leader may run a
			// release without layout_index: list by this node's layout,
			// as that release does, rather than fail every list.
			n.warnOlderMetaLeader(err)
		default:
			return nil, 0, err
		}
	}
	l, at := n.meta.meta.LayoutAt()
	return l, at, nil
}

// olderMetaLeader tells whether err is how a metadata leader of a release
// without layout_index refuses it: a bad request from a node whose last
// forwarding answer carried no protocol version. Every versioned release
// (protocol.Version) knows layout_index, so its bad request is a real one;
// the unversioned releases before it include the first ones without it.
func (n *Node) olderMetaLeader(err error) bool {
	if !errors.Is(err, base.ErrBadRequest) {
		return false
	}
	id := n.leaderOf(base.MetaGroup)
	if id == "" || id == n.cfg.ID {
		return false
	}
	info, ok := n.Layout().Node(id)
	if !ok {
		return false
	}
	v, ok := n.fwd.PeerVersion(info.RaftAddr)
	return ok && v == protocol.Unversioned
}

// warnOlderMetaLeader logs, at most once a minute, that lists use this
// node's own layout because the metadata leader is of an earlier release.
func (n *Node) warnOlderMetaLeader(err error) {
	now := time.Now().UnixNano()
	last := n.olderMetaWarned.Load()
	if now-last < int64(time.Minute) || !n.olderMetaWarned.CompareAndSwap(last, now) {
		return
	}
	n.log.Warn("the metadata leader runs an earlier release: lists use this node's layout, which may lag a ring change, until it is upgraded", "err", err)
}

// waitLayout waits until this node's layout reflects every metadata entry
// up to index. Entries that never reach the metadata state machine
// (no-ops, barriers, configuration changes) are recognised in the log, as
// waitApplied does for a group's.
func (n *Node) waitLayout(ctx context.Context, index uint64) error {
	r := n.meta
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		changed := r.meta.Changed()
		_, at := r.meta.LayoutAt()
		if at >= index {
			return nil
		}
		// Past the last command applied only barriers, no-ops and
		// configuration changes are usual: a few, so look at up to 1024.
		if r.raft.AppliedIndex() >= index && !r.entriesOfType(at+1, index, 1024, raft.LogCommand) {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: the layout on this node is at metadata index %d, not %d yet", base.ErrUnavailable, at, index)
		}
	}
}
