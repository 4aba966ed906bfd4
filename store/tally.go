package store

// Tally counts keys and bytes (key plus value) in one class of keys.
type Tally struct {
	Keys  uint64 `json:"keys"`
	Bytes uint64 `json:"bytes"`
}

// TallyBy sorts every stored key into one of n classes with classify (a
// result outside [0, n) leaves the key out) and counts each class, from one
// consistent view of the store. It reads every key: a preview of a ring
// change costs one pass over each group.
func (s *Store) TallyBy(classify func(key []byte) int, n int) ([]Tally, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	out := make([]Tally, n)
	tx, err := s.readTx()
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		if c := classify(k); c >= 0 && c < n {
			e, err := decodeRecord(k, v, false)
			if err != nil {
				return err
			}
			out[c].Keys++
			out[c].Bytes += uint64(len(k) + len(v) - uvarintLen(e.CreateIndex) - uvarintLen(e.ModifyIndex))
		}
		return nil
	})
	return out, err
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
