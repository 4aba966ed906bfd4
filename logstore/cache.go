package logstore

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Cache keeps a group's latest log entries in memory in front of its
// log store, as raft.LogCache does, but bounded in bytes as well as in
// entries: an entry carries a batch of writes, and raft.LogCache's 1,024
// entries of batches of 64 KiB values held 380 MB on one follower. The
// cached entries are one run of consecutive indexes, the newest.
type Cache struct {
	store    raft.LogStore
	maxBytes int

	mu          sync.RWMutex
	ring        []*raft.Log
	first, last uint64 // the cached run; first is 0 when it is empty
	bytes       int
}

// Bounds of each group's log cache.
const (
	CacheEntries = 1024
	CacheBytes   = 16 << 20
)

func NewCache(store raft.LogStore, entries, maxBytes int) *Cache {
	return &Cache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}
}

// Size is what an entry counts against the cache's bound.
func EntrySize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 64 }

// IsMonotonic tells raft what the store beneath says.
func (c *Cache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *Cache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	if c.first != 0 && index >= c.first && index <= c.last {
		if l := c.ring[index%uint64(len(c.ring))]; l != nil && l.Index == index {
			*log = *l
			c.mu.RUnlock()
			return nil
		}
	}
	c.mu.RUnlock()
	return c.store.GetLog(index, log)
}

func (c *Cache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *Cache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("unable to store logs within log store, err: %q", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		size := EntrySize(l)
		if c.first != 0 && l.Index != c.last+1 {
			c.clear() // not the next one: start a new run
		}
		if size > c.maxBytes {
			c.clear()
			continue
		}
		for c.first != 0 && (c.last-c.first+1 >= uint64(len(c.ring)) || c.bytes+size > c.maxBytes) {
			c.dropFirst()
		}
		if c.first == 0 {
			c.first = l.Index
		}
		c.ring[l.Index%uint64(len(c.ring))] = l
		c.last = l.Index
		c.bytes += size
	}
	return nil
}

func (c *Cache) dropFirst() {
	slot := c.first % uint64(len(c.ring))
	c.bytes -= EntrySize(c.ring[slot])
	c.ring[slot] = nil
	if c.first++; c.first > c.last {
		c.first, c.last, c.bytes = 0, 0, 0
	}
}

func (c *Cache) clear() {
	for c.first != 0 {
		c.dropFirst()
	}
}

func (c *Cache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }
func (c *Cache) LastIndex() (uint64, error)  { return c.store.LastIndex() }

// DeleteRange forgets the cached run if the range touches it: compaction
// deletes older entries and leaves it; a conflicting suffix removes it.
func (c *Cache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	if c.first != 0 && min <= c.last && max >= c.first {
		c.clear()
	}
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}
