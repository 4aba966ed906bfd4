package logstore

import (
	"sync"

	"github.com/hashicorp/raft"
)

// sizes remembers the size of a log's newest entries, so that the log
// kept after a snapshot can be bounded in bytes as well as in entries.
type sizes struct {
	mu   sync.Mutex
	ring []entrySize // by index modulo its length
}

type entrySize struct {
	index uint64
	bytes int64
}

func newSizes(n int) *sizes { return &sizes{ring: make([]entrySize, max(1, n))} }

// note records the sizes of entries just stored.
func (z *sizes) note(logs []*raft.Log) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, l := range logs {
		z.ring[l.Index%uint64(len(z.ring))] = entrySize{index: l.Index, bytes: int64(EntrySize(l))}
	}
}

// sizeOf is entry index's size, read from s when not remembered.
func (z *sizes) sizeOf(s raft.LogStore, index uint64) (int64, bool) {
	z.mu.Lock()
	e := z.ring[index%uint64(len(z.ring))]
	z.mu.Unlock()
	if e.index == index {
		return e.bytes, true
	}
	var l raft.Log
	if err := s.GetLog(index, &l); err != nil {
		return 0, false
	}
	size := int64(EntrySize(&l))
	z.mu.Lock()
	if cur := &z.ring[index%uint64(len(z.ring))]; cur.index < index {
		*cur = entrySize{index: index, bytes: size}
	}
	z.mu.Unlock()
	return size, true
}

// trailingWithin is how many of s's newest entries raft should keep after
// a snapshot so that they hold at most limit bytes (at least one, at most
// maxEntries). Entry sizes not seen since the node started are read from
// the log once.
func trailingWithin(s raft.LogStore, z *sizes, limit int64, maxEntries uint64) uint64 {
	if maxEntries == 0 {
		return 0
	}
	first, err1 := s.FirstIndex()
	last, err2 := s.LastIndex()
	if err1 != nil || err2 != nil || last == 0 {
		return maxEntries
	}
	var n uint64
	var sum int64
	for i := last; i >= first && i > 0 && n < maxEntries; i-- {
		size, ok := z.sizeOf(s, i)
		if !ok {
			break // gone meanwhile: a truncation ran
		}
		if sum += size; sum > limit && n > 0 {
			break
		}
		n++
	}
	return max(n, 1)
}
