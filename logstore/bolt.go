package logstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/ringkv/ringkv/store"
)

// Bolt is a group's Raft log and stable store: raft-boltdb behind a lock,
// so that its file can be rewritten with the live entries only. A bbolt
// file never shrinks: once snapshots have truncated the log, the pages of
// every entry written since the file was created stay in it as free space.
// When they make up most of the file after a truncation, the file is
// rewritten (see compactIfSparse).
//
// It also remembers the size of the newest entries, so that the log kept
// after a snapshot can be bounded in bytes as well as in entries
// (TrailingWithin).
type Bolt struct {
	opts    raftboltdb.Options
	log     *slog.Logger
	onFatal func(error)

	mu     sync.RWMutex
	s      *raftboltdb.BoltStore
	broken error // a rewrite could not reopen the file

	sizes *sizes
}

// A log file is rewritten after a truncation when its free pages make up
// at least half of it and at least logCompactAbove bytes.
const logCompactAbove = 16 << 20

var (
	_ raft.LogStore    = (*Bolt)(nil)
	_ raft.StableStore = (*Bolt)(nil)
)

// OpenBolt opens the log at opts.Path, remembering the sizes of up to
// sizes of its newest entries as they are written.
func OpenBolt(opts raftboltdb.Options, sizes int, log *slog.Logger, onFatal func(error)) (*Bolt, error) {
	// A rewrite that a crash interrupted leaves its copy beside the file;
	// the file itself is whole (the copy is renamed over it only when
	// complete and synced).
	os.Remove(opts.Path + ".compact")
	s, err := raftboltdb.New(opts)
	if err != nil {
		return nil, err
	}
	return &Bolt{opts: opts, log: log, onFatal: onFatal, s: s, sizes: newSizes(sizes)}, nil
}

// store returns the open store, with b.mu read-locked; call done after.
func (b *Bolt) store() (*raftboltdb.BoltStore, error) {
	b.mu.RLock()
	if b.broken != nil {
		b.mu.RUnlock()
		return nil, b.broken
	}
	return b.s, nil
}

func (b *Bolt) done() { b.mu.RUnlock() }

func (b *Bolt) FirstIndex() (uint64, error) {
	s, err := b.store()
	if err != nil {
		return 0, err
	}
	defer b.done()
	return s.FirstIndex()
}

func (b *Bolt) LastIndex() (uint64, error) {
	s, err := b.store()
	if err != nil {
		return 0, err
	}
	defer b.done()
	return s.LastIndex()
}

func (b *Bolt) GetLog(index uint64, l *raft.Log) error {
	s, err := b.store()
	if err != nil {
		return err
	}
	defer b.done()
	return s.GetLog(index, l)
}

func (b *Bolt) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }

func (b *Bolt) StoreLogs(logs []*raft.Log) error {
	s, err := b.store()
	if err != nil {
		return err
	}
	err = s.StoreLogs(logs)
	b.done()
	if err == nil {
		b.sizes.note(logs)
	}
	return err
}

// DeleteRange deletes the entries, then rewrites the file if that left it
// mostly free space (a truncation after a snapshot).
func (b *Bolt) DeleteRange(min, max uint64) error {
	s, err := b.store()
	if err != nil {
		return err
	}
	err = s.DeleteRange(min, max)
	b.done()
	if err != nil {
		return err
	}
	b.compactIfSparse()
	return nil
}

func (b *Bolt) Set(k, v []byte) error {
	s, err := b.store()
	if err != nil {
		return err
	}
	defer b.done()
	return s.Set(k, v)
}

func (b *Bolt) Get(k []byte) ([]byte, error) {
	s, err := b.store()
	if err != nil {
		return nil, err
	}
	defer b.done()
	return s.Get(k)
}

func (b *Bolt) SetUint64(k []byte, v uint64) error {
	s, err := b.store()
	if err != nil {
		return err
	}
	defer b.done()
	return s.SetUint64(k, v)
}

func (b *Bolt) GetUint64(k []byte) (uint64, error) {
	s, err := b.store()
	if err != nil {
		return 0, err
	}
	defer b.done()
	return s.GetUint64(k)
}

func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken != nil {
		return nil
	}
	b.broken = errors.New("raft log closed")
	return b.s.Close()
}

// sparse reports whether free pages make up most of the file.
func (b *Bolt) sparse() bool {
	s, err := b.store()
	if err != nil {
		return false
	}
	defer b.done()
	fi, err := os.Stat(b.opts.Path)
	if err != nil {
		return false
	}
	free := store.FreeBytes(s.Stats(), os.Getpagesize())
	return free >= logCompactAbove && free*2 >= fi.Size()
}

// compactIfSparse rewrites the file with its live entries when free pages
// make up most of it. Every use of the log waits meanwhile: the copy holds
// what is left after a truncation, which the byte bound on trailing
// entries keeps small. If the file cannot be opened again the node stops
// (onFatal): raft cannot go on without its log.
func (b *Bolt) compactIfSparse() {
	if !b.sparse() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken != nil {
		return
	}
	if err := b.s.Close(); err != nil {
		b.log.Warn("closing the raft log to compact it", "err", err)
	}
	before, after, rerr := store.RewriteFile(b.opts.Path)
	s, err := raftboltdb.New(b.opts)
	if err != nil {
		b.broken = fmt.Errorf("raft log: reopening after compaction: %w", errors.Join(rerr, err))
		b.log.Error("raft log lost after compaction", "err", b.broken)
		if b.onFatal != nil {
			go b.onFatal(b.broken)
		}
		return
	}
	b.s = s
	if rerr != nil {
		b.log.Warn("compacting the raft log", "err", rerr)
		return
	}
	b.log.Info("raft log compacted", "before_bytes", before, "after_bytes", after)
}

// TrailingWithin is how many of the newest entries raft should keep after
// a snapshot so that they hold at most limit bytes (see trailingWithin).
func (b *Bolt) TrailingWithin(limit int64, maxEntries uint64) uint64 {
	return trailingWithin(b, b.sizes, limit, maxEntries)
}
