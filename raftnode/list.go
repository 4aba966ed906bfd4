package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// Lists are read page by page from every group and merged as they go, so
// that what a list holds at once is a page or two per group, whatever the
// data under the prefix.
//
// listPageEntries and listPageBytes bound one page a list asks a group
// for; maxScanPage bounds a page whatever the asker asks for;
// maxUnpagedScan bounds the answer to a scan that does not page (from an
// earlier release), past which the scan is refused, not cut short.
// Atomic so that tests can change them while a node runs.
var listPageEntries, listPageBytes, maxScanPage, maxUnpagedScan atomic.Int64

func init() {
	listPageEntries.Store(1000)
	listPageBytes.Store(512 << 10)
	maxScanPage.Store(4 << 20)
	maxUnpagedScan.Store(256 << 20)
}

const (
	// maxListRestarts bounds how often one list starts over after the
	// ring changed under it.
	maxListRestarts = 20
)

// ListEach calls emit with every key under o.Prefix across all groups, in
// key order, each group read at o.Consistency page by page. Every page is
// served under the routing of the layout the list began with; when the
// ring changes under it, the list reads every group again from the last
// key it emitted, under the new routing, so that no key is emitted twice
// or left out. An error from emit ends the list with that error.
//
// The groups listed are those of a layout that reflects every metadata
// entry committed before the call (unless o.Consistency is stale): a node
// whose layout lags, as after a restart, would otherwise leave out a group
// that a ring change added, and with it the keys moved there.
func (n *Node) ListEach(ctx context.Context, o ListOptions, emit func(protocol.KV) error) error {
	emitted := 0
	after := o.After
	for restarts := 0; ; restarts++ {
		l, at, err := n.currentLayout(ctx, o.Consistency)
		if err != nil {
			return err
		}
		if !l.Initialized {
			return fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
		}
		m := &listMerge{n: n, o: o, at: at, routing: l.RoutingVersion(), pageEntries: int(listPageEntries.Load()), pageBytes: int(listPageBytes.Load())}
		err = m.run(ctx, l, after, &emitted, func(kv protocol.KV) error {
			after = kv.Key
			return emit(kv)
		})
		if !errors.Is(err, errRingChanged) {
			return err
		}
		if restarts == maxListRestarts {
			return fmt.Errorf("%w: the ring changed %d times while the list ran; list again from after=%q", base.ErrUnavailable, restarts+1, after)
		}
		// The node that refused may know a newer layout than this one
		// (a stale list reads this node's own): give it time to arrive.
		if !sleepCtx(ctx, time.Duration(restarts+1)*10*time.Millisecond) {
			return fmt.Errorf("%w: %v", base.ErrUnavailable, context.Cause(ctx))
		}
	}
}

// List returns what ListEach emits.
func (n *Node) List(ctx context.Context, o ListOptions) ([]protocol.KV, error) {
	var out []protocol.KV
	err := n.ListEach(ctx, o, func(kv protocol.KV) error {
		out = append(out, kv)
		return nil
	})
	return out, err
}

// errRingChanged is how a list's merge says it must start over.
var errRingChanged = errors.New("ring changed while listing")

// listMerge merges the pages of every group of one layout.
type listMerge struct {
	n       *Node
	o       ListOptions
	at      uint64
	routing uint64
	// pageEntries and pageBytes bound the pages it asks for; read once,
	// as pages are fetched in goroutines that may outlive the list.
	pageEntries, pageBytes int
}

// groupCursor is where a list stands in one group: the page it is taking
// keys from and, when there is more, the next page on its way.
type groupCursor struct {
	g    base.GroupID
	page []protocol.KV
	pos  int
	next chan pageResult // nil when the group has no more keys
}

type pageResult struct {
	kvs  []protocol.KV
	more bool
	err  error
}

func (m *listMerge) fetch(ctx context.Context, g base.GroupID, after []byte, limit int) chan pageResult {
	ch := make(chan pageResult, 1)
	maxBytes := m.pageBytes
	go func() {
		resp, err := m.n.do(ctx, protocol.Request{Op: protocol.OpScan, Group: g, Prefix: m.o.Prefix, After: after, Limit: limit,
			MaxBytes: maxBytes, KeysOnly: m.o.KeysOnly, Consistency: m.o.Consistency, LayoutIndex: m.at, Routing: m.routing})
		// A release without paging ignores MaxBytes but honours Limit:
		// a full page may have more behind it.
		ch <- pageResult{resp.Entries, resp.More || (len(resp.Entries) > 0 && len(resp.Entries) >= limit), base.ReadError(err)}
	}()
	return ch
}

// take waits for a cursor's next page and asks for the one after it.
func (m *listMerge) take(ctx context.Context, c *groupCursor, limit int) error {
	var p pageResult
	select {
	case p = <-c.next:
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", base.ErrUnavailable, context.Cause(ctx))
	}
	if p.err != nil {
		if errors.Is(p.err, base.ErrMoved) || m.n.Layout().RoutingVersion() != m.routing {
			return errRingChanged
		}
		return p.err
	}
	c.page, c.pos, c.next = p.kvs, 0, nil
	if p.more && len(p.kvs) > 0 {
		c.next = m.fetch(ctx, c.g, p.kvs[len(p.kvs)-1].Key, limit)
	}
	return nil
}

func (m *listMerge) run(ctx context.Context, l *layout.Layout, after []byte, emitted *int, emit func(protocol.KV) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // pages on their way are dropped
	pageLimit := func() int {
		if m.o.Limit > 0 {
			return min(m.pageEntries, m.o.Limit-*emitted)
		}
		return m.pageEntries
	}
	cs := make([]*groupCursor, len(l.Groups))
	for i, g := range l.Groups {
		cs[i] = &groupCursor{g: g.ID, next: m.fetch(ctx, g.ID, after, pageLimit())}
	}
	for m.o.Limit == 0 || *emitted < m.o.Limit {
		var best *groupCursor
		for _, c := range cs {
			for c.pos == len(c.page) && c.next != nil {
				if err := m.take(ctx, c, pageLimit()); err != nil {
					return err
				}
			}
			if c.pos < len(c.page) && (best == nil || bytes.Compare(c.page[c.pos].Key, best.page[best.pos].Key) < 0) {
				best = c
			}
		}
		if best == nil {
			return nil
		}
		kv := best.page[best.pos]
		best.pos++
		// While ranges move a key may sit in two groups for a moment;
		// each group answers only for the keys routed to it, so this
		// is a guard, not a path.
		for _, c := range cs {
			if c.pos < len(c.page) && bytes.Equal(c.page[c.pos].Key, kv.Key) {
				c.pos++
			}
		}
		if err := emit(kv); err != nil {
			return err
		}
		*emitted++
	}
	return nil
}
