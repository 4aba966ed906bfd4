package logstore

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// WALSegmentBytes is the size of each segment file of a WAL log. raft-wal
// preallocates every segment it opens, so a node pays this much disk for
// each group it hosts; its default (64 MiB) is made for one Raft group
// per server.
const WALSegmentBytes = 4 << 20

// WAL is a group's Raft log and stable store on hashicorp/raft-wal:
// segment files written by appending, one fsync per append, truncated by
// deleting whole segments, so it needs no compaction. Like Bolt it
// remembers the size of the newest entries (TrailingWithin).
type WAL struct {
	w     *wal.WAL
	sizes *sizes
}

var (
	_ raft.LogStore          = (*WAL)(nil)
	_ raft.StableStore       = (*WAL)(nil)
	_ raft.MonotonicLogStore = (*WAL)(nil)
)

// OpenWAL opens (or creates) the log in dir, remembering the sizes of up
// to sizes of its newest entries as they are written.
func OpenWAL(dir string, sizes int, logger hclog.Logger) (*WAL, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w, err := wal.Open(dir, wal.WithSegmentSize(WALSegmentBytes), wal.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("raft-wal %s: %w", dir, err)
	}
	return &WAL{w: w, sizes: newSizes(sizes)}, nil
}

func (l *WAL) FirstIndex() (uint64, error)              { return l.w.FirstIndex() }
func (l *WAL) LastIndex() (uint64, error)               { return l.w.LastIndex() }
func (l *WAL) GetLog(index uint64, log *raft.Log) error { return l.w.GetLog(index, log) }
func (l *WAL) StoreLog(log *raft.Log) error             { return l.StoreLogs([]*raft.Log{log}) }

func (l *WAL) StoreLogs(logs []*raft.Log) error {
	if err := l.w.StoreLogs(logs); err != nil {
		return err
	}
	l.sizes.note(logs)
	return nil
}

func (l *WAL) DeleteRange(min, max uint64) error { return l.w.DeleteRange(min, max) }

func (l *WAL) Set(k, v []byte) error              { return l.w.Set(k, v) }
func (l *WAL) Get(k []byte) ([]byte, error)       { return l.w.Get(k) }
func (l *WAL) SetUint64(k []byte, v uint64) error { return l.w.SetUint64(k, v) }
func (l *WAL) GetUint64(k []byte) (uint64, error) { return l.w.GetUint64(k) }

// IsMonotonic says the log accepts only consecutive appends: raft then
// empties it when it installs a snapshot instead of leaving a gap.
func (l *WAL) IsMonotonic() bool { return true }

func (l *WAL) Close() error { return l.w.Close() }

// TrailingWithin is how many of the newest entries raft should keep after
// a snapshot so that they hold at most limit bytes (see trailingWithin).
func (l *WAL) TrailingWithin(limit int64, maxEntries uint64) uint64 {
	return trailingWithin(l, l.sizes, limit, maxEntries)
}
