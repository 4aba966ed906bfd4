package httpapi

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
)

// Blocking queries, Consul's way: a read given index= answers at once if
// what it reads differs from it, otherwise once that changes or its wait
// has passed. A key's reader waits on the change history of the key's
// group; a list's, on every group's, from the cursor its last list
// carried (X-KV-Cursor). Either may answer early (a group's leader
// moved, a ring change moved the key), never late: a reader compares
// again and asks anew.

// hdrKVCursor carries, on a list, the cursor to block on for its next
// change.
const hdrKVCursor = "X-KV-Cursor"

// blockWait is a blocking query's wait: the one asked for, or the
// default, plus up to a sixteenth more, as Consul adds, so that readers
// woken together do not all come back together.
func blockWait(q kvQuery) time.Duration {
	w := q.wait
	if w == 0 {
		w = defaultBlockingWait
	}
	return w + rand.N(w/16+1)
}

// getBlocking reads key once its modify index is no longer q.index (0: the
// key is absent), or once the wait is over.
func (a *API) getBlocking(ctx context.Context, key []byte, q kvQuery) (raftnode.ReadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, blockWait(q))
	defer cancel()
	read := func() (raftnode.ReadResult, error) {
		// The wait is over or the key changed: a read of its own, with
		// time for it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), watchCheck)
		defer cancel()
		return a.b.GetAt(rctx, key, q.consistency, q.minIndex)
	}
	look, err := a.b.Lookup(key)
	if err != nil {
		return raftnode.ReadResult{}, err
	}
	// Where the history ends before the read: a change after the read
	// comes after it.
	start, err := a.b.Changes(ctx, look.Group, raftnode.ChangesRequest{FromNow: true})
	if err != nil {
		return raftnode.ReadResult{}, err
	}
	res, err := a.b.GetAt(ctx, key, q.consistency, q.minIndex)
	if err != nil && !errors.Is(err, base.ErrNotFound) {
		return res, err
	}
	if res.ModifyIndex != q.index || res.Group != look.Group {
		return res, err
	}
	after := start.Last
	for {
		left := time.Until(deadlineOf(ctx))
		if left <= 0 {
			return read()
		}
		page, err := a.feeds.read(ctx, look.Group, after, key, left)
		if err != nil {
			return read() // the client's wait, or the group's history, ended
		}
		for _, ch := range page.Changes {
			if bytes.Equal(ch.Key, key) {
				return read()
			}
		}
		after = page.Next
	}
}

func deadlineOf(ctx context.Context) time.Time {
	dl, _ := ctx.Deadline()
	return dl
}

// listCursor is where every group's history ends: the X-KV-Cursor of a
// list read after it. A change under the prefix after it may be in the
// list or not; one that is wakes a blocking list at once, which costs an
// answer but never misses a change.
func (a *API) listCursor(ctx context.Context) (api.Cursor, error) {
	groups, _ := a.b.DataGroups()
	c := api.Cursor{}
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := a.b.Changes(ctx, g, raftnode.ChangesRequest{FromNow: true})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			c[g] = p.Last
		}()
	}
	wg.Wait()
	return c, first
}

// waitListChange returns once a change under prefix follows cursor in
// any group (a group cursor does not name counts from its start), or the
// wait is over.
func (a *API) waitListChange(ctx context.Context, prefix []byte, cursor api.Cursor, q kvQuery) {
	ctx, cancel := context.WithTimeout(ctx, blockWait(q))
	defer cancel()
	groups, _ := a.b.DataGroups()
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel() // the first group to see a change, or to fail, ends the wait
			after := cursor[g]
			for {
				p, err := a.feeds.read(ctx, g, after, prefix, time.Until(deadlineOf(ctx)))
				if err != nil || len(p.Changes) > 0 || ctx.Err() != nil {
					return
				}
				after = p.Next
			}
		}()
	}
	wg.Wait()
}
