package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/snapshot"
)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyApplied = []byte("applied")
	// keyAppliedTerm is the Raft term of the applied index's entry.
	keyAppliedTerm = []byte("applied_term")
	keyCount       = []byte("count")
	// keyFences holds the fenced ranges (see moving.go); keyOffset what
	// is added to a write's Raft index to make its modify index, raised
	// past every ingested one.
	keyFences   = []byte("fences")
	keyOffset   = []byte("index_offset")
	keyMoveTerm = []byte("move_term")
)

// Options configures a Store.
type Options struct {
	// Group is recorded in checkpoints written by Snapshot.
	Group uint32
	// MmapSize is bbolt's initial mmap size. A large value avoids remaps,
	// which would wait for long read transactions such as a snapshot being
	// persisted. Virtual address space only.
	MmapSize int
	// NoSync skips fsync on commit with no protection at all. Only for
	// tests and bulk loads.
	NoSync bool
	// TreeDepth is the depth of the Merkle tree of a new store (an
	// existing store keeps the depth it was created with).
	TreeDepth int
	// KeyHash places a key in the ring's hash space, for fences and
	// moving commands (which fail without it). Every replica of a group
	// must use the same function.
	KeyHash func(key []byte) uint64
	// CommitDelay lets applied entries wait up to this long in an open
	// transaction, so that one commit covers several of them; any read
	// but Get commits them first (Get reads them in that transaction).
	// 0 commits every apply.
	CommitDelay time.Duration
	// HistoryEntries is how many changes the group's history keeps
	// (see history.go); 0 keeps DefaultHistoryEntries. Replicas with
	// different values keep the same changes, over windows of different
	// lengths.
	HistoryEntries int
	// HistoryBytes bounds the history's records' size (keys, values and
	// a little per record); 0 bounds it by the store's live data instead
	// (historyShare of it, within historyFloor and DefaultHistoryBytes),
	// so that a small store keeps a small history.
	HistoryBytes int64
	// DeferSync skips fsync on commit but detects, at the next Open, a
	// machine crash that may have torn the file (see deferred.go). Use it
	// only when the caller keeps another durable copy of the state to
	// rebuild it from. On systems without a boot id it falls back to fsync
	// on every commit.
	DeferSync bool
}

// DefaultOptions returns the options ringkvd uses: every commit is synced,
// so the state file is itself the durable copy of a group's state (its
// Raft snapshots hold no second copy; see raftnode's stateSnapshots).
func DefaultOptions() Options {
	return Options{MmapSize: 1 << 30, TreeDepth: snapshot.DefaultTreeDepth, CommitDelay: DefaultCommitDelay}
}

// Store is the state machine of one group. See the package comment for its
// concurrency contract.
type Store struct {
	path   string
	opts   Options
	bootID string // set when commits are deferred

	mu sync.RWMutex // guards db against swap by Restore
	db *bolt.DB

	// txMu guards the write transaction that applied entries wait in
	// (see update), and the error of a commit that no caller saw.
	txMu      sync.Mutex
	wtx       *bolt.Tx
	wtxSize   int
	flushErr  error
	flushWake *time.Timer

	applied   atomic.Uint64
	keys      atomic.Uint64
	changeSeq atomic.Uint64
	histBytes atomic.Uint64
	live      atomic.Uint64
	// openSnapshots counts snapshots not yet released: their read
	// transactions would hold CompactFile's close of the file.
	openSnapshots atomic.Int32
	fences        atomic.Pointer[spanSet]
	offset        atomic.Uint64
	moveTerm      atomic.Uint64

	// rootMu guards tree, which the apply goroutine changes, and root, the
	// root last computed, which is stale (rootStale) once entries applied
	// since.
	rootMu    sync.Mutex
	tree      *snapshot.Tree
	root      atomic.Pointer[Root]
	rootStale bool
	// unfolded are the leaves changed since the journal was last folded
	// into the stored leaves; journaled counts its records.
	unfolded  map[int]bool
	journaled int

	// verified holds what recent verify commands recorded, by nonce.
	verifyMu  sync.Mutex
	verified  map[string]verifyRecord
	verifySeq []string

	chMu    sync.Mutex
	changed chan struct{}
}

// Open opens or creates the state file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.HistoryEntries <= 0 {
		opts.HistoryEntries = DefaultHistoryEntries
	}
	if opts.HistoryBytes < 0 {
		opts.HistoryBytes = 0
	}
	s := &Store{path: path, opts: opts, changed: make(chan struct{})}
	s.removeLeftovers()
	settle, err := s.markBeforeOpen()
	if err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	if settle {
		if err := s.settleMarker(); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	return s, nil
}

func (s *Store) open() error {
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{
		Timeout:         5 * time.Second,
		InitialMmapSize: s.opts.MmapSize,
		NoSync:          s.opts.NoSync || s.bootID != "",
		FreelistType:    bolt.FreelistMapType,
	})
	if err != nil {
		return fmt.Errorf("store: open %s: %w", s.path, err)
	}
	var applied, count, offset, moveTerm, changeSeq, histBytes, live uint64
	var fences spanSet
	var tree *snapshot.Tree
	depth := s.opts.TreeDepth
	if depth == 0 {
		depth = snapshot.DefaultTreeDepth
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketChanges} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		applied, count, offset, moveTerm = getU64(m, keyApplied), getU64(m, keyCount), getU64(m, keyOffset), getU64(m, keyMoveTerm)
		changeSeq, histBytes = getU64(m, keyChangeSeq), getU64(m, keyChangeBytes)
		if live, err = liveBytes(tx, m); err != nil {
			return err
		}
		if b := m.Get(keyFences); b != nil {
			if fences, err = decodeSpanSet(b); err != nil {
				return err
			}
		}
		fresh := tx.Bucket(bucketMerkle) == nil
		if tree, err = loadTree(tx, depth); err != nil {
			return err
		}
		if s.unfolded, s.journaled, err = replayJournal(tx, tree); err != nil {
			return err
		}
		if fresh {
			all := make(map[int]bool, tree.Leaves())
			for i := 0; i < tree.Leaves(); i++ {
				all[i] = true
			}
			return saveLeaves(tx, tree, all)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("store: init %s: %w", s.path, err)
	}
	s.db = db
	s.applied.Store(applied)
	s.keys.Store(count)
	s.changeSeq.Store(changeSeq)
	s.histBytes.Store(histBytes)
	s.live.Store(live)
	s.offset.Store(offset)
	s.moveTerm.Store(moveTerm)
	s.fences.Store(&fences)
	s.rootMu.Lock()
	s.tree = tree
	s.root.Store(&Root{Index: applied, Hash: tree.Root(), Depth: tree.Depth()})
	s.rootStale = false
	s.rootMu.Unlock()
	return nil
}

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, k []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(k, buf[:])
}

// Close closes the state file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	if s.flushWake != nil {
		s.flushWake.Stop()
	}
	err := s.flush()
	if s.bootID != "" && err == nil {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	s.db = nil
	if err == nil && s.bootID != "" {
		err = s.clearMarker()
	}
	return err
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// AppliedIndex returns the highest index whose effects are in the store.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// KeyCount returns the number of keys held.
func (s *Store) KeyCount() uint64 { return s.keys.Load() }

// FileSize returns the size of the state file in bytes.
func (s *Store) FileSize() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Changed returns a channel closed the next time the applied index moves.
func (s *Store) Changed() <-chan struct{} {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.chMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.chMu.Unlock()
}

// LogEntry is one Raft log entry handed to ApplyBatch. Data nil marks an
// entry with no state effect (a configuration change) that still advances
// the applied index.
type LogEntry struct {
	Index uint64
	// Term is the Raft term the entry was written in; checkpoints record
	// the term of their index.
	Term uint64
	Data []byte
}

// Result is the outcome of one command.
type Result struct {
	// Index is the Raft index of the command.
	Index uint64
	// Applied reports whether the command changed the store.
	Applied bool
	// ModifyIndex is the key's modify index after the command (0 if the key
	// is absent afterwards).
	ModifyIndex uint64
	// Current is the key's modify index before the command (0: absent).
	Current uint64
	// CASFailed reports a CAS whose expected index did not match Current.
	CASFailed bool
	// NotFound reports a delete of an absent key.
	NotFound bool
	// Replayed reports an entry at or below the applied index, skipped.
	Replayed bool
	// Err reports a command that could not be decoded. It is deterministic:
	// every replica records the same.
	Err error
	// Root is the Merkle root right after a verify command.
	Root *Root
	// Batch holds the outcome of each command of an OpBatch entry, in
	// order; the entry's own Err is set when it could not be decoded.
	Batch []Result
	// Moved reports a put or delete refused because its key's range is
	// fenced: another group holds it, or is taking it over.
	Moved bool
	// ChangeSeq, for an OpFence or OpUnfence, is the history's newest
	// change as of it; IndexFloor a modify index above every one the
	// store gave before it.
	ChangeSeq  uint64
	IndexFloor uint64
	// Count is the entries an OpIngest wrote or the keys an OpDrop
	// deleted; Cursor, for an OpDrop that stopped early, is the key to go
	// on after.
	Count  int
	Cursor []byte
}

// Apply applies one command at index. It returns an error only for I/O
// failures, after which the store must not be used.
func (s *Store) Apply(index uint64, cmd []byte) (Result, error) {
	rs, err := s.ApplyBatch([]LogEntry{{Index: index, Data: cmd}})
	if err != nil {
		return Result{}, err
	}
	return rs[0], nil
}

// ApplyBatch applies entries, in order, in one bbolt transaction, and records
// the last index as applied in that transaction. It returns one Result per
// entry. An error means an I/O failure: nothing of the batch was applied and
// the caller must stop rather than continue and diverge.
func (s *Store) ApplyBatch(entries []LogEntry) ([]Result, error) {
	results := make([]Result, len(entries))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	// A deep verification reads the data exactly as of its own index: the
	// batch is committed up to it, a read transaction opened there, and the
	// rest applied in a new transaction.
	start := 0
	for i, e := range entries {
		nonce, deep := deepVerifyNonce(e.Data)
		if !deep {
			continue
		}
		if err := s.applySegment(entries[start:i+1], results[start:i+1]); err != nil {
			return nil, err
		}
		if results[i].Root != nil {
			s.startDeepVerify(nonce, *results[i].Root)
		}
		start = i + 1
	}
	if start < len(entries) {
		if err := s.applySegment(entries[start:], results[start:]); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// applyTx applies one decoded put or delete inside tx, keeping the Merkle
// tree in step (changed collects the leaves it touched) and the key count
// in st. A key in a fenced range is refused (Result.Moved). The modify
// index is the Raft index plus the store's offset.
func (s *Store) applyTx(kv *bolt.Bucket, st *applyState, changed map[int]bool, index uint64, cmd Command) (Result, error) {
	var r Result
	if s.inSet(st.fences, cmd.Key) {
		r.Moved = true
		return r, nil
	}
	index += st.offset
	var create uint64
	old := st.get(kv, cmd.Key)
	if old != nil {
		c, m, _, err := parseRecord(cmd.Key, old)
		if err != nil {
			return r, err
		}
		r.Current, create = m, c
	}
	r.ModifyIndex = r.Current
	if cmd.HasCAS && cmd.CAS != r.Current {
		r.CASFailed = true
		return r, nil
	}
	switch cmd.Op {
	case OpPut:
		if r.Current == 0 {
			create = index
		}
		delta, err := s.replaceRecord(kv, st, changed, cmd.Key, old, st.record(create, index, cmd.Value), cmd.Value, index)
		if err != nil {
			return r, err
		}
		st.count = uint64(int64(st.count) + delta)
		r.Applied, r.ModifyIndex = true, index
		return r, s.recordChange(st, false, cmd.Key, cmd.Value, index, index-st.offset)
	case OpDelete:
		if r.Current == 0 {
			r.NotFound = true
			return r, nil
		}
		delta, err := s.replaceRecord(kv, st, changed, cmd.Key, old, nil, nil, 0)
		if err != nil {
			return r, err
		}
		st.count = uint64(int64(st.count) + delta)
		r.Applied, r.ModifyIndex = true, 0
		return r, s.recordChange(st, true, cmd.Key, nil, index, index-st.offset)
	}
	return r, fmt.Errorf("store: unreachable op %d", cmd.Op)
}

// Get returns the entry for key, or ErrNotFound.
func (s *Store) Get(key []byte) (Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return Entry{}, ErrClosed
	}
	var e Entry
	err := s.peek(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get(key)
		if v == nil {
			return ErrNotFound
		}
		var err error
		e, err = decodeRecord(key, v, true)
		return err
	})
	return e, err
}

// ScanOptions selects a range of keys.
type ScanOptions struct {
	Prefix []byte
	// After, when set, starts strictly after this key.
	After []byte
	// Limit caps the number of entries (0: no limit).
	Limit int
	// MaxBytes ends the scan once ScanSize of its entries reaches it (0:
	// no bound); at least one entry is returned.
	MaxBytes int
	// KeysOnly leaves values out.
	KeysOnly bool
	// Skip, when set, leaves out the keys it returns true for; they do
	// not count towards Limit.
	Skip func(key []byte) bool
	// Fenced lists the keys in fenced ranges too: the group still answers
	// for them (a restore's fence holds writes only).
	Fenced bool
}

// entryOverhead is what an entry costs beyond its key and value once
// decoded and answered, roughly: a scan's byte bound counts it, so that
// a page of many empty keys is bounded too.
const entryOverhead = 64

func entrySize(e Entry) int { return len(e.Key) + len(e.Value) + entryOverhead }

// ScanSize is what a scan's byte bound (ScanOptions.MaxBytes) counts of
// entries.
func ScanSize(es []Entry) int {
	n := 0
	for _, e := range es {
		n += entrySize(e)
	}
	return n
}

// Scan returns entries whose keys start with Prefix, in key order. Keys in
// fenced ranges are left out: this group no longer answers for them, and
// the copies it still holds until they are dropped may be stale.
func (s *Store) Scan(o ScanOptions) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	var out []Entry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		start := o.Prefix
		if o.After != nil && bytes.Compare(o.After, start) >= 0 {
			start = o.After
		}
		fences := *s.fences.Load()
		size := 0
		if o.Fenced {
			fences = nil
		}
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, o.Prefix); k, v = c.Next() {
			if o.After != nil && bytes.Compare(k, o.After) <= 0 {
				continue
			}
			if (o.Skip != nil && o.Skip(k)) || s.inSet(fences, k) {
				continue
			}
			e, err := decodeRecord(k, v, !o.KeysOnly)
			if err != nil {
				return err
			}
			out = append(out, e)
			size += entrySize(e)
			if (o.Limit > 0 && len(out) >= o.Limit) || (o.MaxBytes > 0 && size >= o.MaxBytes) {
				break
			}
		}
		return nil
	})
	return out, err
}
