package logstore

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the store beneath a cache.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(i uint64, l *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(i, l)
}

// The log cache answers the newest entries from memory within its bounds
// of entries and bytes, every other one from the store, and never answers
// an entry the store no longer holds as it was.
func TestLogCacheIsBoundedInBytes(t *testing.T) {
	st := &countingStore{InmemStore: raft.NewInmemStore()}
	c := NewCache(st, 64, 10_000)
	entry := func(i uint64, size int) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, size)}
	}
	// 300 entries of 0 to 990 bytes, stored in batches of 7.
	var batch []*raft.Log
	for i := uint64(1); i <= 300; i++ {
		batch = append(batch, entry(i, int(i%100)*10))
		if len(batch) == 7 || i == 300 {
			if err := c.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
		if c.bytes > c.maxBytes || c.last-c.first+1 > 64 {
			t.Fatalf("after %d: %d bytes in %d entries cached, bounds 10000 and 64", i, c.bytes, c.last-c.first+1)
		}
	}
	if c.last != 300 || c.first < 237 {
		t.Fatalf("cached run %d..%d, want the newest ending at 300", c.first, c.last)
	}
	check := func(i uint64) {
		t.Helper()
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil || l.Index != i || len(l.Data) != int(i%100)*10 {
			t.Fatalf("GetLog(%d) = index %d, %d bytes (%v)", i, l.Index, len(l.Data), err)
		}
	}
	st.reads = 0
	for i := c.first; i <= 300; i++ {
		check(i)
	}
	if st.reads != 0 {
		t.Fatalf("%d reads of cached entries reached the store", st.reads)
	}
	for i := uint64(1); i < 200; i++ {
		check(i)
	}
	if st.reads != 199 {
		t.Fatalf("%d store reads for 199 entries older than the cache", st.reads)
	}
	// An entry larger than the bound is not cached, and leaves nothing
	// older cached out of order.
	if err := c.StoreLog(entry(301, 20_000)); err != nil {
		t.Fatal(err)
	}
	if c.first != 0 || c.bytes != 0 {
		t.Fatalf("after an entry over the bound: run %d..%d, %d bytes", c.first, c.last, c.bytes)
	}
	// A conflicting suffix deleted and written again reads as written.
	if err := c.StoreLogs([]*raft.Log{entry(302, 10), entry(303, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRange(303, 303); err != nil {
		t.Fatal(err)
	}
	repl := &raft.Log{Index: 303, Term: 2, Data: []byte("new")}
	if err := c.StoreLog(repl); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(303, &l); err != nil || l.Term != 2 || string(l.Data) != "new" {
		t.Fatalf("303 after its replacement: term %d %q (%v)", l.Term, l.Data, err)
	}
	// Compaction below the run leaves it cached.
	if err := c.DeleteRange(1, 250); err != nil {
		t.Fatal(err)
	}
	if c.first == 0 || c.last != 303 {
		t.Fatalf("compaction below the run dropped it: %d..%d", c.first, c.last)
	}
}
