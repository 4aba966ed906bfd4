package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

// Moving keys between groups. When the ring changes, ranges of the hash
// space change group. The source group fences them (its clients' puts and
// deletes of keys there are refused from the fence's index on, so nothing
// changes behind the copy), the destination ingests the entries with their
// indexes, both sides' digests of the ranges are compared, and the source
// drops its copy. Each step is a command in the group's log, so every
// replica takes it at the same index.

// Commands that move keys.
const (
	// OpFence adds its ranges to the group's fenced set: from its index
	// on, puts and deletes of keys there are refused (Result.Moved).
	OpFence Op = 5
	// OpUnfence removes its ranges from the fenced set: the group takes
	// the keys there over.
	OpUnfence Op = 6
	// OpIngest writes entries moved from another group as they are, with
	// their create and modify indexes, fenced or not. Later writes get
	// modify indexes above every ingested one.
	OpIngest Op = 7
	// OpDrop deletes keys in its ranges, in key order after a cursor, up
	// to a limit; Result.Cursor says where to go on.
	OpDrop Op = 8
)

// dropExamine bounds the keys one OpDrop looks at, so that one entry never
// holds the apply loop for long.
const dropExamine = 20000

// MaxIngest bounds the entries of one OpIngest.
const MaxIngest = 4096

// MovedEntry is an entry being moved; Deleted removes the key instead.
type MovedEntry struct {
	Key         []byte `json:"key"`
	Value       []byte `json:"value,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	Deleted     bool   `json:"deleted,omitempty"`
}

// Moving is a decoded moving command.
type Moving struct {
	Op Op
	// Term is the metadata-group term of the mover that sent it. A store
	// refuses moving commands from a term below the highest it has seen:
	// a mover deposed while its commands were on the way can never act
	// after its successor has (ErrStaleMover).
	Term    uint64
	Ranges  []HashRange
	Entries []MovedEntry // OpIngest
	After   []byte       // OpDrop: start after this key
	Limit   int          // OpDrop: delete at most this many keys
	// Source, SourceSeq and SourceFloor (OpUnfence of a ring change's
	// destination) name the group the ranges come from, its newest change
	// when it fenced them and the modify index all it gave is below
	// (Result.ChangeSeq and IndexFloor of the fence): the store records
	// the takeover in its history, so that a watch delivers the source's
	// changes to the ranges before this group's (see Takeover), and raises
	// its index offset to SourceFloor, so that a key's modify indexes go
	// on increasing across the move.
	Source      uint32
	SourceSeq   uint64
	SourceFloor uint64
}

// IsMoving reports whether b is a moving command.
func IsMoving(b []byte) bool {
	return len(b) >= 2 && Op(b[0]) >= OpFence && Op(b[0]) <= OpDrop
}

// Encode lays a moving command out: op byte, flags byte (0), uvarint term,
// uvarint range count, 16 bytes per range, then for OpIngest a uvarint entry count and
// per entry key, value (each uvarint length then bytes), create and modify
// index (uvarints) and a deleted byte; for OpDrop the cursor (uvarint
// length then bytes) and a uvarint limit; for OpUnfence with a Source, the
// source, its history position and its index floor (uvarints; absent in
// commands of earlier releases, which had none).
func (m Moving) Encode() []byte {
	b := []byte{byte(m.Op), 0}
	b = binary.AppendUvarint(b, m.Term)
	b = binary.AppendUvarint(b, uint64(len(m.Ranges)))
	for _, r := range m.Ranges {
		b = binary.BigEndian.AppendUint64(b, r.Start)
		b = binary.BigEndian.AppendUint64(b, r.End)
	}
	switch m.Op {
	case OpIngest:
		b = binary.AppendUvarint(b, uint64(len(m.Entries)))
		for _, e := range m.Entries {
			b = appendBytes(b, e.Key)
			b = appendBytes(b, e.Value)
			b = binary.AppendUvarint(b, e.CreateIndex)
			b = binary.AppendUvarint(b, e.ModifyIndex)
			if e.Deleted {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case OpDrop:
		b = appendBytes(b, m.After)
		b = binary.AppendUvarint(b, uint64(m.Limit))
	case OpUnfence:
		if m.Source != 0 {
			b = binary.AppendUvarint(b, uint64(m.Source))
			b = binary.AppendUvarint(b, m.SourceSeq)
			b = binary.AppendUvarint(b, m.SourceFloor)
		}
	}
	return b
}

func appendBytes(b, x []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(x)))
	return append(b, x...)
}

// reader decodes a moving command, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: %s", ErrBadCommand, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what)
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s length", ErrBadCommand, what)
	}
	if r.err != nil {
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// DecodeMoving parses Moving.Encode's output. Slices alias b.
func DecodeMoving(b []byte) (Moving, error) {
	if !IsMoving(b) || b[1] != 0 {
		return Moving{}, fmt.Errorf("%w: not a moving command", ErrBadCommand)
	}
	m := Moving{Op: Op(b[0])}
	r := &reader{b: b[2:]}
	m.Term = r.uvarint("term")
	n := r.uvarint("range count")
	if r.err == nil && (n == 0 || n > uint64(len(r.b))/16) {
		r.err = fmt.Errorf("%w: %d ranges", ErrBadCommand, n)
	}
	if r.err != nil {
		return Moving{}, r.err
	}
	m.Ranges = make([]HashRange, n)
	for i := range m.Ranges {
		m.Ranges[i] = HashRange{binary.BigEndian.Uint64(r.b), binary.BigEndian.Uint64(r.b[8:])}
		r.b = r.b[16:]
	}
	switch m.Op {
	case OpIngest:
		n := r.uvarint("entry count")
		if r.err == nil && (n == 0 || n > MaxIngest || n > uint64(len(r.b))) {
			r.err = fmt.Errorf("%w: %d entries", ErrBadCommand, n)
		}
		seen := map[string]bool{}
		for i := uint64(0); i < n && r.err == nil; i++ {
			e := MovedEntry{Key: r.bytes("key"), Value: r.bytes("value"), CreateIndex: r.uvarint("create index"), ModifyIndex: r.uvarint("modify index")}
			if r.err != nil {
				break
			}
			switch {
			case len(r.b) == 0 || r.b[0] > 1:
				r.err = fmt.Errorf("%w: entry %d deleted flag", ErrBadCommand, i)
			case len(e.Key) == 0 || seen[string(e.Key)]:
				r.err = fmt.Errorf("%w: entry %d key empty or repeated", ErrBadCommand, i)
			case r.b[0] == 0 && (e.ModifyIndex == 0 || e.CreateIndex == 0 || e.CreateIndex > e.ModifyIndex):
				r.err = fmt.Errorf("%w: entry %d indexes %d/%d", ErrBadCommand, i, e.CreateIndex, e.ModifyIndex)
			case r.b[0] == 1 && len(e.Value) != 0:
				r.err = fmt.Errorf("%w: entry %d deleted with a value", ErrBadCommand, i)
			}
			if r.err == nil {
				e.Deleted = r.b[0] == 1
				r.b = r.b[1:]
				seen[string(e.Key)] = true
				m.Entries = append(m.Entries, e)
			}
		}
	case OpDrop:
		m.After = r.bytes("cursor")
		limit := r.uvarint("limit")
		if r.err == nil && (limit == 0 || limit > dropExamine) {
			r.err = fmt.Errorf("%w: drop limit %d", ErrBadCommand, limit)
		}
		m.Limit = int(limit)
	case OpUnfence:
		if r.err == nil && len(r.b) > 0 {
			src := r.uvarint("source group")
			m.SourceSeq = r.uvarint("source history position")
			m.SourceFloor = r.uvarint("source index floor")
			if r.err == nil && (src == 0 || src > 1<<32-1) {
				r.err = fmt.Errorf("%w: unfence from group %d", ErrBadCommand, src)
			}
			m.Source = uint32(src)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes after the command", ErrBadCommand, len(r.b))
	}
	if r.err != nil {
		return Moving{}, r.err
	}
	return m, nil
}

// applyState is what an apply transaction changes besides the buckets,
// published once it commits.
type applyState struct {
	count    uint64
	fences   spanSet
	offset   uint64
	moveTerm uint64
	// fencesChanged, offsetChanged and termChanged ask for them to be
	// persisted.
	fencesChanged, offsetChanged, termChanged bool

	// cur looks keys up in the key-value bucket: one cursor for the whole
	// segment, where Bucket.Get makes a new one (and its stack) per key.
	cur *bolt.Cursor
	// hist is the history's bucket and seq its newest change's number;
	// seqChanged asks for seq to be persisted.
	hist       *bolt.Bucket
	seq        uint64
	seqChanged bool
	histBytes  uint64
	// live is the bytes of the key-value records (keys and records), and
	// liveChanged asks for it to be persisted.
	live        uint64
	liveChanged bool

	// slab is where the segment's new records are laid out: bbolt keeps a
	// put's value until the transaction commits, so records are carved
	// from shared blocks rather than allocated one by one.
	slab []byte
}

// get returns key's stored record in kv, or nil, as kv.Get does.
func (st *applyState) get(kv *bolt.Bucket, key []byte) []byte {
	if st.cur == nil {
		st.cur = kv.Cursor()
	}
	k, v := st.cur.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}

// slabBlock is the largest block records are carved from.
const slabBlock = 16 << 10

// record lays out encodeRecord's bytes in st's slab.
func (st *applyState) record(create, modify uint64, value []byte) []byte {
	n := 2*binary.MaxVarintLen64 + len(value)
	if n > slabBlock/4 {
		return encodeRecord(create, modify, value)
	}
	if cap(st.slab)-len(st.slab) < n {
		// Blocks double from 1 KiB up to slabBlock: a segment of a few
		// small writes (the usual one) does not clear 16 KiB for them.
		size := min(max(2*cap(st.slab), 1<<10, n), slabBlock)
		st.slab = make([]byte, 0, size)
	}
	at := len(st.slab)
	st.slab = binary.AppendUvarint(st.slab, create)
	st.slab = binary.AppendUvarint(st.slab, modify)
	st.slab = append(st.slab, value...)
	return st.slab[at:len(st.slab):len(st.slab)]
}

// inRanges reports whether key's position is in set.
func (s *Store) inSet(set spanSet, key []byte) bool {
	return len(set) > 0 && s.opts.KeyHash != nil && set.contains(s.opts.KeyHash(key))
}

// applyMoving applies one moving command inside the apply transaction.
func (s *Store) applyMoving(kv *bolt.Bucket, st *applyState, changed map[int]bool, index uint64, data []byte) (Result, error) {
	var res Result
	m, err := DecodeMoving(data)
	if err != nil {
		res.Err = err
		return res, nil
	}
	if s.opts.KeyHash == nil {
		res.Err = fmt.Errorf("%w: this store has no key hash to place keys in ranges", ErrBadCommand)
		return res, nil
	}
	if m.Term < st.moveTerm {
		res.Err = fmt.Errorf("%w: command of term %d, a mover of term %d has acted here", ErrStaleMover, m.Term, st.moveTerm)
		return res, nil
	}
	if m.Term > st.moveTerm {
		st.moveTerm, st.termChanged = m.Term, true
	}
	switch m.Op {
	case OpFence, OpUnfence:
		for _, r := range m.Ranges {
			for _, sp := range r.spans() {
				if m.Op == OpFence {
					st.fences = st.fences.union(sp)
				} else {
					st.fences = st.fences.minus(sp)
				}
			}
		}
		st.fencesChanged = true
		res.Applied = true
		// Every modify index this store gave before the fence is below
		// its index plus the offset.
		res.ChangeSeq, res.IndexFloor = st.seq, index+st.offset
		if m.Op == OpUnfence && m.Source != 0 {
			// Keys taken over get modify indexes above any the source
			// gave them, deleted keys' included (their deletes were not
			// copied, so no ingest raised the offset for them).
			if m.SourceFloor > st.offset {
				st.offset, st.offsetChanged = m.SourceFloor, true
			}
			if err := s.recordTakeover(st, m.Source, m.SourceSeq); err != nil {
				return res, err
			}
		}
	case OpIngest:
		for _, e := range m.Entries {
			var rec []byte
			if !e.Deleted {
				rec = encodeRecord(e.CreateIndex, e.ModifyIndex, e.Value)
			}
			delta, err := s.replaceRecord(kv, st, changed, e.Key, kv.Get(e.Key), rec, e.Value, e.ModifyIndex)
			if err != nil {
				return res, err
			}
			st.count = uint64(int64(st.count) + delta)
			if e.ModifyIndex > st.offset {
				st.offset, st.offsetChanged = e.ModifyIndex, true
			}
			res.Count++
		}
		res.Applied = true
	case OpDrop:
		set := spanSetOf(m.Ranges)
		var doomed [][]byte
		var last []byte
		c := kv.Cursor()
		k, _ := c.Seek(m.After)
		if k != nil && len(m.After) > 0 && bytes.Equal(k, m.After) {
			k, _ = c.Next()
		}
		for examined := 0; k != nil && examined < dropExamine && len(doomed) < m.Limit; k, _ = c.Next() {
			examined++
			last = append(last[:0], k...)
			if set.contains(s.opts.KeyHash(k)) {
				doomed = append(doomed, append([]byte(nil), k...))
			}
		}
		if k != nil {
			res.Cursor = last // more keys follow: go on after the last one looked at
		}
		for _, k := range doomed {
			delta, err := s.replaceRecord(kv, st, changed, k, kv.Get(k), nil, nil, 0)
			if err != nil {
				return res, err
			}
			st.count = uint64(int64(st.count) + delta)
			res.Count++
		}
		res.Applied = true
	}
	return res, nil
}

// replaceRecord replaces key's record old (nil: absent) by rec (nil
// deletes it), keeping the Merkle tree and the live bytes (in st) in step,
// and returns the change in key count.
func (s *Store) replaceRecord(kv *bolt.Bucket, st *applyState, changed map[int]bool, key, old, rec, value []byte, modify uint64) (int64, error) {
	var delta int64
	if old != nil {
		st.live -= min(uint64(len(key)+len(old)), st.live)
	}
	if rec != nil {
		st.live += uint64(len(key) + len(rec))
	}
	st.liveChanged = st.liveChanged || old != nil || rec != nil
	var kh uint64
	if maintainMerkle {
		kh = snapshot.KeyHash(key)
	}
	if maintainMerkle && old != nil {
		_, oldModify, oldValue, err := parseRecord(key, old)
		if err != nil {
			return 0, err
		}
		changed[s.tree.Toggle(kh, snapshot.EntryDigest(key, oldValue, oldModify))] = true
	}
	switch {
	case rec == nil && old == nil:
		return 0, nil
	case rec == nil:
		delta = -1
		if err := kv.Delete(key); err != nil {
			return 0, err
		}
	default:
		if old == nil {
			delta = 1
		}
		if err := kv.Put(key, rec); err != nil {
			return 0, err
		}
		if maintainMerkle {
			changed[s.tree.Toggle(kh, snapshot.EntryDigest(key, value, modify))] = true
		}
	}
	return delta, nil
}

// Fenced reports whether key lies in a fenced range as of the applied
// index: this group no longer answers for it.
func (s *Store) Fenced(key []byte) bool { return s.inSet(*s.fences.Load(), key) }

// IndexOffset is what the store adds to a write's Raft index to make its
// modify index.
func (s *Store) IndexOffset() uint64 { return s.offset.Load() }

// RangeView is a page of the entries in some ranges, read from one
// consistent view of the store.
type RangeView struct {
	// Index is the applied index the view was read at, and Offset the
	// store's index offset then: any write after the view has a modify
	// index above Index+Offset.
	Index   uint64
	Offset  uint64
	Entries []Entry
	// Cursor, when set, is the key to go on after: the scan stopped at
	// its limit.
	Cursor []byte
	// Digest is the XOR of the entry digests (as the Merkle leaves use)
	// of the entries in the page, and Keys their number.
	Digest snapshot.Digest
	Keys   uint64
}

// ScanRanges returns, in key order after the key after, the entries whose
// keys lie in ranges: at most limit of them and about maxBytes of keys and
// values, having looked at no more than examine keys (each bound 0: none).
// An entry carries its value only if its modify index is above valuesAbove
// (0: every value; math.MaxUint64: none). Digest and Keys cover every entry
// in the page, so that summing pages digests the ranges.
func (s *Store) ScanRanges(ranges []HashRange, after []byte, limit, maxBytes, examine int, valuesAbove uint64) (RangeView, error) {
	var v RangeView
	if s.opts.KeyHash == nil {
		return v, fmt.Errorf("%w: this store has no key hash to place keys in ranges", ErrBadCommand)
	}
	set := spanSetOf(ranges)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return v, ErrClosed
	}
	err := s.view(func(tx *bolt.Tx) error {
		v.Index = getU64(tx.Bucket(bucketMeta), keyApplied)
		v.Offset = getU64(tx.Bucket(bucketMeta), keyOffset)
		c := tx.Bucket(bucketKV).Cursor()
		k, rec := c.Seek(after)
		if k != nil && len(after) > 0 && bytes.Equal(k, after) {
			k, rec = c.Next()
		}
		var last []byte
		size := 0
		for examined := 0; k != nil; k, rec = c.Next() {
			if (limit > 0 && len(v.Entries) >= limit) || (examine > 0 && examined >= examine) || (maxBytes > 0 && size >= maxBytes) {
				v.Cursor = last
				break
			}
			examined++
			last = append(last[:0], k...)
			if !set.contains(s.opts.KeyHash(k)) {
				continue
			}
			e, err := decodeRecord(k, rec, true)
			if err != nil {
				return err
			}
			d := snapshot.EntryDigest(e.Key, e.Value, e.ModifyIndex)
			for i := range d {
				v.Digest[i] ^= d[i]
			}
			v.Keys++
			if valuesAbove > 0 && e.ModifyIndex <= valuesAbove {
				e.Value = nil
			}
			size += len(e.Key) + len(e.Value)
			v.Entries = append(v.Entries, e)
		}
		return nil
	})
	return v, err
}
