package raftnode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// A data group's state file is synced at every commit and survives
// restarts, so it is the durable copy of the group's state: a Raft snapshot
// need not be a second one. As etcd does with its bbolt backend, a data
// group's snapshot holds only raft's metadata (index, term, configuration)
// and a mark: the state file's applied index once committed for the
// snapshot. When raft sends the snapshot to a follower, the data is a
// checkpoint of the state file read at that moment, at an index at or past
// the snapshot's. The follower installs it and then skips the entries the
// checkpoint already holds, as it does for the log tail at a restart (the
// store ignores entries at or below its applied index).
//
// Before raft truncates its log behind a snapshot, the snapshot's Persist
// commits the state file (a synced commit), so every entry the log drops is
// durable in the state file. The mark records the index that commit
// covered: raft's snapshot index may be past the last entry the state
// machine saw (no-ops and barriers do not reach it), so the mark, not the
// snapshot's index, is what a state file must have reached at start-up.
//
// A snapshot that holds data is still served as it is: one received from
// a leader (until this node takes its own), or one written by an earlier
// release.

// stateMarkSize is the size of a mark: its magic and an index. A
// checkpoint is never so small (its header alone is larger).
const stateMarkSize = 16

var stateMarkMagic = [8]byte{'R', 'K', 'V', 'S', 'T', 'A', 'T', 'E'}

func encodeStateMark(index uint64) []byte {
	b := make([]byte, stateMarkSize)
	copy(b, stateMarkMagic[:])
	binary.BigEndian.PutUint64(b[8:], index)
	return b
}

// isStateMark reports whether a snapshot holds a mark rather than data.
func isStateMark(meta *raft.SnapshotMeta) bool { return meta.Size == stateMarkSize }

// stateSnapshots is the snapshot store of a data group. Create, List and
// the metadata come from raft's file store; Open of a marked snapshot
// streams a checkpoint of st.
type stateSnapshots struct {
	files *raft.FileSnapshotStore
	st    *store.Store
}

var _ raft.SnapshotStore = (*stateSnapshots)(nil)

func (s *stateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	return s.files.Create(version, index, term, configuration, configurationIndex, trans)
}

func (s *stateSnapshots) List() ([]*raft.SnapshotMeta, error) { return s.files.List() }

// Open returns the snapshot's data: the stored bytes when it holds data,
// else a checkpoint of the state file taken now. Close the reader to
// release the state file's read transaction.
func (s *stateSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.files.Open(id)
	if err != nil || !isStateMark(meta) {
		return meta, rc, err
	}
	rc.Close()
	return s.openState(meta)
}

// markedIndex reads the index a marked snapshot's commit covered.
func (s *stateSnapshots) markedIndex(id string) (uint64, error) {
	_, rc, err := s.files.Open(id)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	b := make([]byte, stateMarkSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return 0, fmt.Errorf("snapshot %s: reading its mark: %w", id, err)
	}
	if !bytes.Equal(b[:8], stateMarkMagic[:]) {
		return 0, fmt.Errorf("snapshot %s: %d bytes that are not a state mark", id, stateMarkSize)
	}
	return binary.BigEndian.Uint64(b[8:]), nil
}

// openState returns a checkpoint of the state file in place of the data
// of meta. Its size is known before a byte is read (raft sends it ahead).
func (s *stateSnapshots) openState(meta *raft.SnapshotMeta) (*raft.SnapshotMeta, io.ReadCloser, error) {
	sn, err := s.st.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	if idx := sn.Header().Index; idx < meta.Index {
		sn.Release()
		return nil, nil, fmt.Errorf("snapshot %s is at index %d but the state file only at %d", meta.ID, meta.Index, idx)
	}
	if err := sn.Compact(); err != nil {
		sn.Release()
		return nil, nil, err
	}
	out := *meta
	out.Size = int64(snapshot.HeaderSize) + int64(sn.Header().Size) + int64(snapshot.DigestSize)
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := sn.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	return &out, &stateReader{PipeReader: pr, done: done, sn: sn}, nil
}

// stateReader streams a checkpoint written by a goroutine; Close stops
// that goroutine and releases the read transaction.
type stateReader struct {
	*io.PipeReader
	done chan struct{}
	sn   *store.Snapshot
	once sync.Once
}

func (r *stateReader) Close() error {
	r.once.Do(func() {
		r.PipeReader.Close()
		<-r.done
		r.sn.Release()
	})
	return nil
}

// stateMark is the FSMSnapshot of a data group: it commits the state file
// and writes the mark of the index that commit covered.
type stateMark struct {
	st            *store.Store
	log           *slog.Logger
	beforePersist *func(liveBytes int64)
}

func (m stateMark) Persist(sink raft.SnapshotSink) error {
	// Applies go on meanwhile: the commit covers the snapshot's index and
	// perhaps more, which is what the snapshot promises.
	c, err := m.st.Commit()
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("committing the state file for a snapshot: %w", err)
	}
	if m.beforePersist != nil {
		(*m.beforePersist)(c.LiveBytes)
	}
	if _, err := sink.Write(encodeStateMark(c.Index)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release rewrites the state file with its live data only when deletes have
// left it mostly free space (raft calls Release from its snapshot
// goroutine, so applies wait only for the copy itself).
func (m stateMark) Release() {
	compactIfWorth(m.st, m.log)
}
