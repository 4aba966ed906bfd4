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

// Snapshot marks the applied index; the data stays in the state file (see
// stateSnapshots).
func (f *dataFSM) Snapshot() (raft.FSMSnapshot, error) {
	return stateMark{st: f.st, log: f.log, beforePersist: f.beforePersist.Load()}, nil
}

func (f *dataFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Restore(rc)
}

// compactIfWorth rewrites the state file with its live data only when
// deletes have left it mostly free space.
func compactIfWorth(st *store.Store, log *slog.Logger) {
	if !st.WantsCompaction() {
		return
	}
	before, after, err := st.CompactFile()
	switch {
	case errors.Is(err, store.ErrCompactionBusy):
	case err != nil:
		log.Warn("compacting the state file", "err", err)
	default:
		log.Info("state file compacted", "before_bytes", before, "after_bytes", after)
	}
}
