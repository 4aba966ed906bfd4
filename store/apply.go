package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// applySegment applies entries in one transaction, filling results. The
// caller holds s.mu for reading.
func (s *Store) applySegment(entries []LogEntry, results []Result) error {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	applied := s.applied.Load()
	st := &applyState{count: s.keys.Load(), fences: *s.fences.Load(), offset: s.offset.Load(), moveTerm: s.moveTerm.Load(), seq: s.changeSeq.Load(), histBytes: s.histBytes.Load(), live: s.live.Load()}
	last, lastTerm := applied, uint64(0)
	changed := map[int]bool{}
	err := s.update(len(entries), func(tx *bolt.Tx) error {
		kv := tx.Bucket(bucketKV)
		st.hist = tx.Bucket(bucketChanges)
		for i, e := range entries {
			results[i].Index = e.Index
			if e.Index <= last {
				results[i].Replayed = true
				continue
			}
			last, lastTerm = e.Index, e.Term
			if e.Data == nil {
				continue
			}
			r, err := s.applyEntry(kv, st, changed, e)
			if err != nil {
				return err
			}
			results[i] = r
		}
		if last == applied {
			return nil
		}
		if err := st.persist(tx.Bucket(bucketMeta), last, lastTerm); err != nil {
			return err
		}
		if !maintainMerkle {
			return nil
		}
		return s.persistLeaves(tx, changed, last)
	})
	if err != nil {
		return fmt.Errorf("store: apply batch ending at %d: %w", last, err)
	}
	if last != applied {
		s.keys.Store(st.count)
		s.changeSeq.Store(st.seq)
		s.histBytes.Store(st.histBytes)
		s.live.Store(st.live)
		s.offset.Store(st.offset)
		s.moveTerm.Store(st.moveTerm)
		s.fences.Store(&st.fences)
		s.rootStale = true
		s.applied.Store(last)
		s.notify()
	}
	return nil
}

// applyEntry applies one entry's data inside tx. An error aborts the whole
// batch; an entry that does not decode gets its error in its Result.
func (s *Store) applyEntry(kv *bolt.Bucket, st *applyState, changed map[int]bool, e LogEntry) (Result, error) {
	res := Result{Index: e.Index}
	switch {
	case IsMoving(e.Data):
		r, err := s.applyMoving(kv, st, changed, e.Index, e.Data)
		r.Index = e.Index
		return r, err
	case IsBatch(e.Data):
		cmds, err := DecodeBatch(e.Data)
		if err != nil {
			res.Err = err
			return res, nil
		}
		res.Batch = make([]Result, len(cmds))
		for j, cmd := range cmds {
			r, err := s.applyTx(kv, st, changed, e.Index, cmd)
			if err != nil {
				return res, err
			}
			r.Index = e.Index
			res.Batch[j] = r
		}
		return res, nil
	}
	cmd, err := DecodeCommand(e.Data)
	if err != nil {
		res.Err = err
		return res, nil
	}
	if cmd.Op == OpVerify {
		root := Root{Index: e.Index, Hash: s.tree.Root(), Depth: s.tree.Depth()}
		res.Root = &root
		s.recordVerify(string(cmd.Key), root, s.tree)
		return res, nil
	}
	r, err := s.applyTx(kv, st, changed, e.Index, cmd)
	r.Index = e.Index
	return r, err
}

// persist writes, in the meta bucket m, what a batch ending at index last
// (of term lastTerm) changed besides the data.
func (st *applyState) persist(m *bolt.Bucket, last, lastTerm uint64) error {
	if lastTerm != 0 {
		if err := putU64(m, keyAppliedTerm, lastTerm); err != nil {
			return err
		}
	}
	if err := putU64(m, keyApplied, last); err != nil {
		return err
	}
	if err := putU64(m, keyCount, st.count); err != nil {
		return err
	}
	if st.liveChanged {
		if err := putU64(m, keyLiveBytes, st.live); err != nil {
			return err
		}
	}
	if st.seqChanged {
		if err := putU64(m, keyChangeSeq, st.seq); err != nil {
			return err
		}
		if err := putU64(m, keyChangeBytes, st.histBytes); err != nil {
			return err
		}
	}
	if st.offsetChanged {
		if err := putU64(m, keyOffset, st.offset); err != nil {
			return err
		}
	}
	if st.termChanged {
		if err := putU64(m, keyMoveTerm, st.moveTerm); err != nil {
			return err
		}
	}
	if st.fencesChanged {
		if err := m.Put(keyFences, st.fences.encode()); err != nil {
			return err
		}
	}
	return nil
}
