package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/store"
)

// ChangesRequest asks a group for the changes of its history after a
// position (store.Changes), waiting for one.
type ChangesRequest struct {
	After  uint64
	Prefix []byte
	// Wait is how long the group's leader waits for a change under
	// Prefix before it answers an empty page (at most
	// protocol.MaxChangesWait).
	Wait time.Duration
	// FromNow asks only where the history ends and begins: the page is
	// empty, its Next and Last are the newest change, First the oldest.
	FromNow bool
}

// DataGroups lists the layout's data groups, and a channel closed when
// the layout changes.
func (n *Node) DataGroups() ([]base.GroupID, <-chan struct{}) {
	changed := n.meta.meta.Changed()
	l := n.Layout()
	ids := make([]base.GroupID, 0, len(l.Groups))
	for _, g := range l.Groups {
		ids = append(ids, g.ID)
	}
	return ids, changed
}

// maxChangesPage bounds the keys and values of one page of changes.
const maxChangesPage = 1 << 20

// leadershipRecheck is how often a leader waiting for changes checks that
// it still leads: a deposed one would wait for changes it never applies.
const leadershipRecheck = 250 * time.Millisecond

// Changes reads a page of group g's change history on its leader, after
// req.After: the changes the group has committed, in order. It waits up
// to req.Wait for one, and retries while the leader is unknown or moves,
// until ctx ends. A position the group no longer serves is a
// *base.CompactedError.
func (n *Node) Changes(ctx context.Context, g base.GroupID, req ChangesRequest) (store.ChangesPage, error) {
	if req.Wait > protocol.MaxChangesWait {
		req.Wait = protocol.MaxChangesWait
	}
	preq := protocol.Request{Op: protocol.OpChanges, Group: g, Index: req.After, Prefix: req.Prefix,
		WaitMS: req.Wait.Milliseconds(), FromNow: req.FromNow}
	if err := preq.Validate(); err != nil {
		return store.ChangesPage{}, err
	}
	resp, err := n.do(ctx, preq)
	if err != nil {
		return store.ChangesPage{}, err
	}
	if resp.Changes == nil {
		return store.ChangesPage{}, fmt.Errorf("group %d: %s answered changes without a page", g, resp.ServedBy)
	}
	return *resp.Changes, nil
}

// serveChanges answers a page of the history once it holds a change
// under the prefix after the position, or the wait is over; it skips,
// meanwhile, what lies outside the prefix (the page's Next says how far).
func (n *Node) serveChanges(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if req.FromNow {
		first, last := r.st.HistoryBounds()
		resp.Changes = &store.ChangesPage{Next: last, First: first, Last: last}
		return resp, nil
	}
	deadline := time.NewTimer(time.Duration(req.WaitMS) * time.Millisecond)
	defer deadline.Stop()
	tick := time.NewTicker(leadershipRecheck)
	defer tick.Stop()
	maxBytes := maxChangesPage
	if req.MaxBytes > 0 {
		maxBytes = min(req.MaxBytes, maxBytes)
	}
	o := store.ChangesOptions{After: req.Index, Prefix: req.Prefix, MaxBytes: maxBytes}
	barrier := false
	for {
		changed := r.st.Changed()
		page, err := r.st.Changes(o)
		var ce *store.CompactedError
		if errors.As(err, &ce) && ce.Ahead && !barrier {
			// A position past what this leader has applied: it may just
			// have been elected, with committed entries still to apply.
			// Once it has applied all it knows committed, a position
			// still ahead is from another history.
			if err := r.readBarrier(ctx, protocol.Linearizable); err != nil {
				return resp, err
			}
			barrier = true
			continue
		}
		if errors.As(err, &ce) {
			return resp, &base.CompactedError{Group: r.id, First: ce.First, Ahead: ce.Ahead, Last: ce.Last}
		}
		if err != nil {
			return resp, err
		}
		resp.Changes = &page
		if len(page.Changes) > 0 || req.WaitMS == 0 || !r.isLeader() {
			// A deposed leader's page is still committed history; the
			// next request finds the new leader.
			return resp, nil
		}
		o.After = page.Next
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			return resp, nil
		case <-ctx.Done():
			return resp, nil
		}
	}
}
