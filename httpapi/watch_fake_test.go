package httpapi

import (
	"bytes"
	"context"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/store"
)

// The fake's change history: group 1's, numbered from 1, as a store
// keeps it. Callers of record hold f.mu.

func (f *fakeBackend) record(ch store.Change) {
	ch.Seq = uint64(len(f.hist)) + 1
	f.hist = append(f.hist, ch)
	if f.histFirst == 0 {
		f.histFirst = 1
	}
	if f.histWake != nil {
		close(f.histWake)
		f.histWake = nil
	}
}

// compactTo drops the changes before first.
func (f *fakeBackend) compactTo(first uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.histFirst = first
}

func (f *fakeBackend) Changes(ctx context.Context, g base.GroupID, req raftnode.ChangesRequest) (store.ChangesPage, error) {
	if g != 1 {
		return store.ChangesPage{}, base.ErrNoLeader
	}
	if req.Wait > 0 {
		n := f.waiting.Add(1)
		defer f.waiting.Add(-1)
		for m := f.maxWaiting.Load(); n > m && !f.maxWaiting.CompareAndSwap(m, n); m = f.maxWaiting.Load() {
		}
	}
	deadline := time.After(req.Wait)
	for {
		f.mu.Lock()
		last := uint64(len(f.hist))
		p := store.ChangesPage{Next: req.After, First: max(f.histFirst, 1), Last: last}
		if req.FromNow {
			p.Next = last
			f.mu.Unlock()
			return p, nil
		}
		if req.After > last || req.After+1 < p.First {
			f.mu.Unlock()
			return p, &base.CompactedError{Group: 1, First: p.First}
		}
		for _, ch := range f.hist[req.After:] {
			p.Next = ch.Seq
			if bytes.HasPrefix(ch.Key, req.Prefix) {
				p.Changes = append(p.Changes, ch)
			}
		}
		if f.histWake == nil {
			f.histWake = make(chan struct{})
		}
		wake := f.histWake
		f.mu.Unlock()
		if len(p.Changes) > 0 || req.Wait == 0 {
			return p, nil
		}
		req.After = p.Next
		select {
		case <-wake:
		case <-deadline:
			return p, nil
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
}

func (f *fakeBackend) DataGroups() ([]base.GroupID, <-chan struct{}) {
	return []base.GroupID{1}, make(chan struct{})
}
