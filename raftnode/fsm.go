package raftnode

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/store"
)

// dataFSM adapts a store.Store to raft's BatchingFSM. A whole batch of
// committed entries is applied in one bbolt transaction.
type dataFSM struct {
	st      *store.Store
	log     *slog.Logger
	onFatal func(error)
	// mu is held while a batch applies; a repair holds it to swap the
	// state under a paused apply stream.
	mu sync.Mutex
	// beforePersist, once set, runs as each snapshot is written, with the
	// size of the data it holds, on raft's snapshot goroutine (not the
	// one that applies), before raft truncates the log (see
	// replica.boundTrailingLogs).
	beforePersist atomic.Pointer[func(liveBytes int64)]
}

var _ raft.BatchingFSM = (*dataFSM)(nil)

func (f *dataFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	entries := make([]store.LogEntry, len(logs))
	for i, l := range logs {
		entries[i].Index, entries[i].Term = l.Index, l.Term
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
			if entries[i].Data == nil {
				entries[i].Data = []byte{}
			}
		}
	}
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	results, err := f.st.ApplyBatch(entries)
	f.mu.Unlock()
	if err != nil {
		// A committed entry that cannot be applied: stop rather than diverge.
		f.onFatal(err)
		for i := range out {
			out[i] = err
		}
		return out
	}
	for i, r := range results {
		out[i] = r
	}
	return out
}

func (f *dataFSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

func (f *dataFSM) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.st.Snapshot()
	if err != nil {
		return nil, err
	}
	return dataSnapshot{sn: sn, st: f.st, log: f.log, beforePersist: f.beforePersist.Load()}, nil
}

func (f *dataFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Restore(rc)
}

type dataSnapshot struct {
	sn            *store.Snapshot
	st            *store.Store
	log           *slog.Logger
	beforePersist *func(liveBytes int64)
}

func (s dataSnapshot) Persist(sink raft.SnapshotSink) error {
	if s.beforePersist != nil {
		(*s.beforePersist)(s.sn.LiveBytes())
	}
	if _, err := s.sn.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release ends the snapshot; then, if deletes have left the state file
// mostly free space, it rewrites the file with the live data only (raft
// calls Release from its snapshot goroutine, so applies wait only for the
// copy itself).
func (s dataSnapshot) Release() {
	s.sn.Release()
	if s.st.WantsCompaction() {
		before, after, err := s.st.CompactFile()
		switch {
		case errors.Is(err, store.ErrCompactionBusy):
		case err != nil:
			s.log.Warn("compacting the state file", "err", err)
		default:
			s.log.Info("state file compacted", "before_bytes", before, "after_bytes", after)
		}
	}
}
