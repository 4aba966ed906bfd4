package raftnode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
)

// An asynchronous write is acknowledged once the group leader has durably
// appended it to its own log, before any follower has it. hashicorp/raft
// says nothing at that point (its futures answer at commit), so the log
// store is wrapped: when StoreLogs returns (the log store has fsynced), the
// entries a proposer is waiting for are recognised by their data, which
// raft hands to the log store as the very slice given to Apply.

// appendNotifier is a LogStore that reports when awaited entries are
// durably stored. It is safe for concurrent use.
type appendNotifier struct {
	raft.LogStore
	mu      sync.Mutex
	waiting map[*byte]func(index, term uint64)
	n       atomic.Int32
}

func newAppendNotifier(ls raft.LogStore) *appendNotifier {
	return &appendNotifier{LogStore: ls, waiting: map[*byte]func(uint64, uint64){}}
}

// IsMonotonic tells raft what the store beneath says (raft-wal takes
// only consecutive appends: raft then empties it after installing a
// snapshot instead of leaving a gap).
func (a *appendNotifier) IsMonotonic() bool {
	m, ok := a.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// expect calls fn with the index and term of the entry carrying exactly
// data once it is stored. The returned function forgets it.
func (a *appendNotifier) expect(data []byte, fn func(index, term uint64)) (forget func()) {
	key := unsafe.SliceData(data)
	a.mu.Lock()
	a.waiting[key] = fn
	a.n.Add(1)
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		if _, ok := a.waiting[key]; ok {
			delete(a.waiting, key)
			a.n.Add(-1)
		}
		a.mu.Unlock()
	}
}

// StoreLogs stores logs, then reports the awaited ones.
func (a *appendNotifier) StoreLogs(logs []*raft.Log) error {
	if err := a.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	if a.n.Load() == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range logs {
		if len(l.Data) == 0 {
			continue
		}
		key := unsafe.SliceData(l.Data)
		if fn, ok := a.waiting[key]; ok {
			delete(a.waiting, key)
			a.n.Add(-1)
			fn(l.Index, l.Term)
		}
	}
	return nil
}

// StoreLog stores one log.
func (a *appendNotifier) StoreLog(l *raft.Log) error { return a.StoreLogs([]*raft.Log{l}) }

// appended is where an asynchronous write landed in the leader's log.
type appended struct{ index, term uint64 }

// Wait returns once the entry at index of group g is committed by a
// majority. With term (the term the write was appended in, as an
// asynchronous write reports), it also checks the entry there is still
// that one: ErrLost if another leader's entry took its place. ErrTimeout
// if ctx ends first.
func (n *Node) Wait(ctx context.Context, g base.GroupID, index, term uint64) (protocol.Response, error) {
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpWait, Group: g, Index: index, Term: term})
	return resp, base.ReadError(err)
}

func (r *replica) waitCommitted(ctx context.Context, index, term uint64) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if !r.isLeader() {
			return r.notLeader()
		}
		var l raft.Log
		have := r.cache.GetLog(index, &l) == nil
		switch {
		case have && term != 0 && l.Term != term:
			return fmt.Errorf("%w: group %d index %d holds an entry of term %d; the write was appended in term %d", base.ErrLost, r.id, index, l.Term, term)
		case !have && term != 0 && r.raft.LastIndex() < index && r.raft.CurrentTerm() > term:
			// A leader of a later term holds every committed entry; this
			// one it lacks, and whatever it puts there will not be it.
			return fmt.Errorf("%w: group %d index %d is past the log of the leader of term %d; the write was appended in term %d", base.ErrLost, r.id, index, r.raft.CurrentTerm(), term)
		case r.raft.CommitIndex() >= index:
			// Committed, by this leader's own count; an entry missing from
			// the log here was compacted, long committed.
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: group %d index %d not committed in time (commit index %d)", base.ErrTimeout, r.id, index, r.raft.CommitIndex())
		case <-tick.C:
		}
	}
}

// waitAppliedLocal waits until this replica's state reflects index, for a
// read that must see an earlier write (min_index).
func (r *replica) waitAppliedLocal(ctx context.Context, index uint64) error {
	for {
		changed := r.st.Changed()
		if r.st.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: group %d replica on this node at index %d, not %d", base.ErrTimeout, r.id, r.st.AppliedIndex(), index)
		}
	}
}
