package store

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultCommitDelay is how long applied entries may wait for a commit
// that covers several of them (Options.CommitDelay).
const DefaultCommitDelay = time.Second

// maxPendingEntries bounds the entries one deferred commit covers.
const maxPendingEntries = 256

// Applied entries are not always committed at once. With a commit delay,
// update leaves its write transaction open and the next apply continues in
// it; the transaction is committed after the delay, after
// maxPendingEntries entries, or as soon as anything but a point read reads
// the store (view and readTx commit first; peek reads the open
// transaction itself), so that a reader always sees everything applied.
// A bbolt commit costs about as much for one entry of a few writes as for
// several, so under load this saves most of the state machine's commits.
//
// Nothing waits on the commit for durability: the Raft log holds every
// applied entry, the applied index is committed with the data it covers,
// and a restart replays the entries after it. The log is only truncated
// behind a snapshot, and a snapshot first calls Commit, whose commit is
// synced (unless the store defers or skips syncs): so the state file is
// durable at least up to every index the log no longer holds. Snapshots
// read through readTx, so they cover exactly the applied index.

// update runs fn, which applies the given number of entries, in the open
// write transaction (or a new one). The caller holds s.mu for reading. An
// error from fn or from a commit means the store must not be used any more
// (ApplyBatch).
func (s *Store) update(entries int, fn func(*bolt.Tx) error) error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if err := s.flushErr; err != nil {
		return err
	}
	tx := s.wtx
	if tx == nil {
		var err error
		if tx, err = s.db.Begin(true); err != nil {
			return err
		}
	}
	if err := fn(tx); err != nil {
		// This also drops earlier applies waiting in tx; the caller
		// stops, and a restart replays them from the log.
		tx.Rollback()
		s.wtx, s.wtxSize = nil, 0
		s.flushErr = errors.New("store: an apply failed; the store is stopped")
		return err
	}
	s.wtxSize += entries
	if s.opts.CommitDelay <= 0 || s.wtxSize >= maxPendingEntries {
		s.wtx, s.wtxSize = nil, 0
		return tx.Commit()
	}
	if s.wtx == nil {
		s.wtx = tx
		if s.flushWake == nil {
			s.flushWake = time.AfterFunc(s.opts.CommitDelay, s.flushLater)
		} else {
			s.flushWake.Reset(s.opts.CommitDelay)
		}
	}
	return nil
}

// flush commits the open write transaction, if any. The caller holds s.mu.
func (s *Store) flush() error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.flushErr != nil {
		return s.flushErr
	}
	if s.wtx == nil {
		return nil
	}
	tx := s.wtx
	s.wtx, s.wtxSize = nil, 0
	if err := tx.Commit(); err != nil {
		s.flushErr = err
		return err
	}
	return nil
}

// flushLater is the commit delay's timer. A failed commit is reported to
// the next apply, which stops the store's user.
func (s *Store) flushLater() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db != nil {
		s.flush()
	}
}

// view runs fn in a read transaction that sees every applied entry.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// peek runs fn, which must copy what it keeps, in the open write
// transaction when applied entries wait in it (holding txMu, so no apply
// runs meanwhile), else in a read transaction. Either way it sees every
// entry applied before it was called, without the commit view pays, which
// is synced: a point read after a write costs a B-tree lookup, not an
// fsync.
func (s *Store) peek(fn func(*bolt.Tx) error) error {
	s.txMu.Lock()
	if err := s.flushErr; err != nil {
		s.txMu.Unlock()
		return err
	}
	if tx := s.wtx; tx != nil {
		defer s.txMu.Unlock()
		return fn(tx)
	}
	s.txMu.Unlock()
	return s.db.View(fn)
}

// readTx opens a read transaction that sees every applied entry; the
// caller rolls it back.
func (s *Store) readTx() (*bolt.Tx, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	return s.db.Begin(false)
}
