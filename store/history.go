package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The change history: every put and delete a client's command applies is
// recorded under a sequence number of its own, counted per group from 1,
// in a bucket of the state file. It travels with the state (checkpoints,
// replica installs) and is the same on every replica, because it is
// written by the apply path alone. Moving a range (ingest, drop) is not a
// change: the keys' values and modify indexes stay what they were.
//
// The history keeps the newest Options.HistoryEntries records, and no
// more than Options.HistoryBytes of them; older ones are pruned as new ones
// are written, so a reader whose position fell behind the oldest gets
// ErrCompacted.

var (
	bucketChanges = []byte("changes")
	keyChangeSeq  = []byte("change_seq")
	// keyChangeBytes is the size of the records kept (recordSize), and
	// keyLiveBytes that of the key-value records (keys and records).
	keyChangeBytes = []byte("change_bytes")
	keyLiveBytes   = []byte("live_bytes")
)

// The history a group keeps by default: DefaultHistoryEntries changes, of
// at most a quarter (1/historyShare) of its live data in bytes, within
// historyFloor and DefaultHistoryBytes.
const (
	DefaultHistoryEntries = 10000
	DefaultHistoryBytes   = 64 << 20
	historyShare          = 4
	historyFloor          = 1 << 20
)

// historyBytes is the bound on the history's bytes for a store holding
// live bytes of data.
func (s *Store) historyBytes(live uint64) uint64 {
	if s.opts.HistoryBytes > 0 {
		return uint64(s.opts.HistoryBytes)
	}
	return min(max(live/historyShare, historyFloor), DefaultHistoryBytes)
}

// liveBytes reads the key-value records' size from the meta bucket m, or
// counts it in a state file of an earlier release, which kept none.
func liveBytes(tx *bolt.Tx, m *bolt.Bucket) (uint64, error) {
	if m.Get(keyLiveBytes) != nil {
		return getU64(m, keyLiveBytes), nil
	}
	var n uint64
	err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		n += uint64(len(k) + len(v))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, putU64(m, keyLiveBytes, n)
}

// recordSize is what a history record counts against HistoryBytes.
func recordSize(v []byte) uint64 { return uint64(len(v)) + 8 }

// Change is one recorded put or delete.
type Change struct {
	// Seq is the change's place in its group's history.
	Seq    uint64
	Delete bool
	Key    []byte
	Value  []byte // puts only
	// Index is the key's modify index as of the change: that of the put,
	// or, for a delete, the one the delete was applied at. A key's
	// changes have increasing indexes, in any group.
	Index     uint64
	RaftIndex uint64
	// Takeover, when set, is not a change of a key but the moment this
	// group took ranges over from another: Key, Value and Delete are
	// empty, and every prefix matches it.
	Takeover *Takeover `json:"takeover,omitempty"`
}

// Takeover records that the group took ranges over from group From,
// whose changes to them are all numbered at most Seq in From's history
// (Seq was its newest change when it fenced them): a reader of both
// histories delivers this group's later changes only once it has read
// From's up to Seq, for a key's changes to come in order.
type Takeover struct {
	From uint32 `json:"from"`
	Seq  uint64 `json:"seq"`
}

// ChangesOptions selects a page of the history.
type ChangesOptions struct {
	// After is the reader's position: the page starts at the next change.
	After  uint64
	Prefix []byte
	// Limit caps the changes returned and MaxBytes their keys and values
	// (0: no cap; at least one change is returned).
	Limit    int
	MaxBytes int
	// MaxScan caps the records looked at (0: 4096), so that a prefix
	// matching few of them costs a bounded read; Next says how far it got.
	MaxScan int
}

// ChangesPage is a page of the history.
type ChangesPage struct {
	Changes []Change
	// Next is the position to read on from: the last record looked at,
	// matching or not (After when there was none).
	Next uint64
	// First is the oldest change still kept (Last+1 when none is) and
	// Last the newest written.
	First, Last uint64
}

// CompactedError says a reader's position is no longer served: the
// changes after it were pruned (Ahead false), or it is past the newest
// change (Ahead true: a position from another history, such as one before
// a restore). First is the oldest change kept, Last the newest.
type CompactedError struct {
	After, First, Last uint64
	Ahead              bool
}

func (e *CompactedError) Error() string {
	if e.Ahead {
		return fmt.Sprintf("store: history position %d is past the newest change %d", e.After, e.Last)
	}
	return fmt.Sprintf("store: history position %d is compacted; the oldest change kept is %d", e.After, e.First)
}

// Is makes a CompactedError match ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// ErrCompacted is matched by every CompactedError.
var ErrCompacted = errors.New("store: history compacted")

const maxChangesScan = 4096

// ChangeSeq returns the sequence number of the newest change applied.
func (s *Store) ChangeSeq() uint64 { return s.changeSeq.Load() }

// HistoryBounds returns the oldest change kept (last+1 when none is) and
// the newest.
func (s *Store) HistoryBounds() (first, last uint64) {
	p, err := s.Changes(ChangesOptions{After: s.ChangeSeq(), MaxScan: 1})
	if err != nil {
		return s.ChangeSeq() + 1, s.ChangeSeq()
	}
	return p.First, p.Last
}

// Changes returns a page of the changes after o.After, in order. It reads
// what was applied when it is called (a reader waits for more with
// Changed). A position before the oldest change kept, or past the newest,
// gets a *CompactedError.
func (s *Store) Changes(o ChangesOptions) (ChangesPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ChangesPage{}, ErrClosed
	}
	scan := o.MaxScan
	if scan <= 0 {
		scan = maxChangesScan
	}
	var p ChangesPage
	err := s.peek(func(tx *bolt.Tx) error {
		p.Last = getU64(tx.Bucket(bucketMeta), keyChangeSeq)
		c := tx.Bucket(bucketChanges).Cursor()
		p.First = p.Last + 1
		if k, _ := c.First(); k != nil {
			p.First = binary.BigEndian.Uint64(k)
		}
		p.Next = o.After
		switch {
		case o.After > p.Last:
			return &CompactedError{After: o.After, First: p.First, Last: p.Last, Ahead: true}
		case o.After+1 < p.First:
			return &CompactedError{After: o.After, First: p.First, Last: p.Last}
		}
		var from [8]byte
		binary.BigEndian.PutUint64(from[:], o.After+1)
		size := 0
		for k, v := c.Seek(from[:]); k != nil && scan > 0; k, v = c.Next() {
			scan--
			seq := binary.BigEndian.Uint64(k)
			p.Next = seq
			ch, err := decodeChange(v, o.Prefix)
			if errors.Is(err, errOtherPrefix) {
				continue
			}
			if err != nil {
				return fmt.Errorf("change %d: %w", seq, err)
			}
			ch.Seq = seq
			p.Changes = append(p.Changes, ch)
			size += len(ch.Key) + len(ch.Value)
			if (o.Limit > 0 && len(p.Changes) >= o.Limit) || (o.MaxBytes > 0 && size >= o.MaxBytes) {
				break
			}
		}
		return nil
	})
	return p, err
}

// recordChange appends a change to the history, in the apply transaction,
// and prunes what falls out of the window.
func (s *Store) recordChange(st *applyState, del bool, key, value []byte, index, raftIndex uint64) error {
	return s.record(st, encodeChange(del, key, value, index, raftIndex))
}

// recordTakeover appends a takeover to the history.
func (s *Store) recordTakeover(st *applyState, from uint32, seq uint64) error {
	b := []byte{changeTakeover}
	b = binary.AppendUvarint(b, uint64(from))
	return s.record(st, binary.AppendUvarint(b, seq))
}

func (s *Store) record(st *applyState, rec []byte) error {
	if st.hist == nil {
		return nil
	}
	st.seq++
	st.seqChanged = true
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], st.seq)
	if err := st.hist.Put(k[:], rec); err != nil {
		return err
	}
	st.histBytes += recordSize(rec)
	keep, maxBytes := uint64(s.opts.HistoryEntries), s.historyBytes(st.live)
	if st.seq <= keep && st.histBytes <= maxBytes {
		return nil
	}
	// Usually the one record that fell out; more after a large one came
	// in or the window shrank. The newest record is always kept.
	c := st.hist.Cursor()
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < st.seq; k, v = c.First() {
		if binary.BigEndian.Uint64(k)+keep > st.seq && st.histBytes <= maxBytes {
			break
		}
		st.histBytes -= min(recordSize(v), st.histBytes)
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

const (
	changePut      = 1
	changeDelete   = 2
	changeTakeover = 3
)

// encodeChange lays a change out: kind byte, uvarint index, uvarint raft
// index, uvarint key length, key, value.
func encodeChange(del bool, key, value []byte, index, raftIndex uint64) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(key)+len(value))
	kind := byte(changePut)
	if del {
		kind = changeDelete
	}
	b = append(b, kind)
	b = binary.AppendUvarint(b, index)
	b = binary.AppendUvarint(b, raftIndex)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

var errOtherPrefix = errors.New("key outside the prefix")

// decodeChange parses encodeChange's bytes, copying key and value out
// (they outlive the transaction); a key without prefix is errOtherPrefix,
// and nothing is copied.
func decodeChange(b, prefix []byte) (Change, error) {
	var ch Change
	if len(b) >= 1 && b[0] == changeTakeover {
		from, n := binary.Uvarint(b[1:])
		if n <= 0 || from == 0 || from > 1<<32-1 {
			return ch, fmt.Errorf("%w: takeover record group", ErrBadCommand)
		}
		seq, m := binary.Uvarint(b[1+n:])
		if m <= 0 || 1+n+m != len(b) {
			return ch, fmt.Errorf("%w: takeover record position", ErrBadCommand)
		}
		ch.Takeover = &Takeover{From: uint32(from), Seq: seq}
		return ch, nil
	}
	if len(b) < 1 || (b[0] != changePut && b[0] != changeDelete) {
		return ch, fmt.Errorf("%w: change record kind", ErrBadCommand)
	}
	ch.Delete = b[0] == changeDelete
	b = b[1:]
	var n int
	if ch.Index, n = binary.Uvarint(b); n <= 0 {
		return ch, fmt.Errorf("%w: change record index", ErrBadCommand)
	}
	b = b[n:]
	if ch.RaftIndex, n = binary.Uvarint(b); n <= 0 {
		return ch, fmt.Errorf("%w: change record raft index", ErrBadCommand)
	}
	b = b[n:]
	kl, n := binary.Uvarint(b)
	if n <= 0 || kl == 0 || kl > uint64(len(b)-n) {
		return ch, fmt.Errorf("%w: change record key length", ErrBadCommand)
	}
	b = b[n:]
	if !bytes.HasPrefix(b[:kl], prefix) {
		return ch, errOtherPrefix
	}
	if ch.Delete && len(b) > int(kl) {
		return ch, fmt.Errorf("%w: a delete record with a value", ErrBadCommand)
	}
	ch.Key = bytes.Clone(b[:kl])
	if !ch.Delete {
		ch.Value = append([]byte{}, b[kl:]...)
	}
	return ch, nil
}
