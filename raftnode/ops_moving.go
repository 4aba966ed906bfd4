package raftnode

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// Node-to-node ops that move keys between groups: the serving side of a
// ring change (start, abort) and of its transfers (scans, fences,
// unfences, ingests, drops), with the checks that only the current mover,
// or the restore holding the lock, may change a group's ranges; and the
// range statistics that plan a move. The mover that sends them is in
// mover.go.

// serveRangeStats counts the keys and bytes the group has committed in hash ranges.
func (n *Node) serveRangeStats(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	// Count what the group has committed, not what a new leader has
	// applied so far.
	if err := r.readBarrier(ctx, protocol.Linearizable); err != nil {
		return resp, err
	}
	t, err := rangeStats(r.st, req.Ranges)
	resp.Tallies = t
	return resp, err
}

// serveMoving runs the moving operations on replica r, which leads its
// group (or the metadata group, for protocol.OpRingChange).
func (n *Node) serveMoving(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if req.Op == protocol.OpRingAbort || req.Op == protocol.OpRingChange {
		return n.serveRingChange(ctx, r, req, resp)
	}
	if r.st == nil {
		return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
	}
	if err := n.checkMovingRequest(ctx, r, req); err != nil {
		return resp, err
	}
	ranges := storeRanges(req.Ranges)
	switch req.Op {
	case protocol.OpRangeScan:
		return serveRangeScan(ctx, r, req, ranges, resp)
	case protocol.OpFence:
		// An asynchronous write is acknowledged at its append: none may
		// be appended after the fence and then refused. Writes check for
		// a migration under asyncMu (read), so once the local layout shows
		// it and the lock is ours, none is between its check and its
		// append.
		// A restore's fence has waited for the lock to show here
		// (checkRestoreMover); asynchronous writes check it too.
		if req.Restore == "" {
			if err := n.waitMigrationSeen(ctx, r.id); err != nil {
				return resp, err
			}
		}
		r.asyncMu.Lock()
		defer r.asyncMu.Unlock()
	}
	return applyMoving(ctx, r, req, ranges, resp)
}

// serveRingChange starts a ring change or aborts the one in motion,
// through the metadata group's log.
func (n *Node) serveRingChange(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if req.Op == protocol.OpRingAbort {
		_, err := r.apply(ctx, mustJSON(layout.Command{Op: layout.OpMigrateAbort}))
		return resp, err
	}
	c := *req.Change
	if c.Add != nil && c.Add.Group == 0 {
		// The next id never used by a group, chosen here on the
		// metadata leader and carried by the command.
		add := *c.Add
		add.Group = nextGroupID(n.Layout())
		c.Add = &add
	}
	_, err := r.apply(ctx, mustJSON(layout.Command{Op: layout.OpMigrateStart, Change: &c}))
	resp.Change = &c
	return resp, err
}

// checkMovingRequest refuses a moving command that no current mover or
// restore sent, and a restore's ingest of a key the ring gives another
// group. Scans change nothing and need no check.
func (n *Node) checkMovingRequest(ctx context.Context, r *replica, req protocol.Request) error {
	switch {
	case req.Restore != "":
		if err := n.checkRestoreMover(ctx, req); err != nil {
			return err
		}
		// A restore's ingest puts each key where the ring routes it.
		l := n.Layout()
		for _, e := range req.Entries {
			if g, err := l.Route(e.Key); err != nil || g != r.id {
				return fmt.Errorf("%w: restore ingest into group %d of key %q, which the ring gives group %d", base.ErrBadRequest, r.id, e.Key, g)
			}
		}
	case req.Op != protocol.OpRangeScan:
		return n.checkMover(ctx, r.id, req)
	}
	return nil
}

// serveRangeScan answers a page of the entries in ranges, once everything
// up to req.Index is applied here.
func serveRangeScan(ctx context.Context, r *replica, req protocol.Request, ranges []store.HashRange, resp protocol.Response) (protocol.Response, error) {
	// Everything up to Index (the fence, for the last pass) must be
	// applied here first.
	if err := r.readBarrier(ctx, protocol.Linearizable); err != nil {
		return resp, err
	}
	if err := r.waitAppliedLocal(ctx, req.Index); err != nil {
		return resp, err
	}
	// Values only where asked: above a modify index (the changes since
	// a first copy), or none for a key listing. Such pages can be
	// longer.
	above, limit := req.Above, scanPageEntries
	if req.KeysOnly {
		above = math.MaxUint64
	}
	if above > 0 {
		limit = scanPageKeys
	}
	v, err := r.st.ScanRanges(ranges, req.After, limit, scanPageBytes, scanExamine, above)
	if err != nil {
		return resp, err
	}
	p := &protocol.ScanPage{Index: v.Index, Offset: v.Offset, Cursor: v.Cursor, Digest: hex.EncodeToString(v.Digest[:]), Keys: v.Keys}
	for _, e := range v.Entries {
		p.Entries = append(p.Entries, store.MovedEntry{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex})
	}
	resp.Scan = p
	return resp, nil
}

// applyMoving puts a fence, unfence, ingest or drop through r's log.
func applyMoving(ctx context.Context, r *replica, req protocol.Request, ranges []store.HashRange, resp protocol.Response) (protocol.Response, error) {
	m := store.Moving{Term: req.Term, Ranges: ranges, Entries: req.Entries, After: req.After, Limit: req.Limit}
	switch req.Op {
	case protocol.OpFence:
		m.Op = store.OpFence
	case protocol.OpUnfence:
		m.Op = store.OpUnfence
		if req.Target != 0 {
			// A destination taking ranges over: its history records
			// where they came from (store.Takeover).
			m.Source, m.SourceSeq, m.SourceFloor = uint32(req.Target), req.Index, req.Floor
		}
	case protocol.OpIngest:
		m.Op = store.OpIngest
	case protocol.OpDrop:
		m.Op = store.OpDrop
	}
	out, err := r.apply(ctx, m.Encode())
	if err != nil {
		return resp, err
	}
	res, ok := out.(store.Result)
	if !ok {
		return resp, fmt.Errorf("group %d: unexpected apply result %T", r.id, out)
	}
	if errors.Is(res.Err, store.ErrStaleMover) {
		return resp, fmt.Errorf("%w: %v", base.ErrConflict, res.Err)
	}
	if res.Err != nil {
		return resp, fmt.Errorf("%w: %v", base.ErrBadRequest, res.Err)
	}
	resp.RaftIndex, resp.Count, resp.Cursor = res.Index, res.Count, res.Cursor
	resp.ChangeSeq, resp.IndexFloor = res.ChangeSeq, res.IndexFloor
	return resp, nil
}

// checkMover refuses a command that changes a group's ranges (fence,
// unfence, ingest, drop) unless it is one the metadata leader's mover could
// have sent: its term is one the metadata group has reached, and its ranges
// are those of a transfer of the ring change in motion from or to group g.
// A store never forgets the highest mover term it has seen (it refuses
// older ones), so an absurd term would otherwise lock every later mover
// out; and a drop of ranges no transfer names would delete keys the group
// owns. The local layout may lag the mover's: it waits for it until ctx
// ends.
func (n *Node) checkMover(ctx context.Context, g base.GroupID, req protocol.Request) error {
	if req.Term == 0 {
		return fmt.Errorf("%w: %s without the mover's metadata term", base.ErrBadRequest, req.Op)
	}
	if meta := n.meta.raft.CurrentTerm(); req.Term > meta {
		return fmt.Errorf("%w: %s of mover term %d, past this node's metadata term %d", base.ErrUnavailable, req.Op, req.Term, meta)
	}
	for {
		changed := n.meta.meta.Changed()
		if m := n.Layout().Migration; m != nil {
			for _, t := range m.Transfers {
				if (t.From == g || t.To == g) && sameRanges(t.Ranges, req.Ranges) {
					return nil
				}
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s of group %d: no transfer of the ring change in motion moves those ranges", base.ErrConflict, req.Op, g)
		}
	}
}

// checkRestoreMover refuses a fence, unfence or ingest sent for a restore
// unless that restore holds the restore lock in this node's layout (waited
// for until ctx ends) and, for a fence or unfence, it covers the whole hash
// space. Its term is bounded as a mover's is.
func (n *Node) checkRestoreMover(ctx context.Context, req protocol.Request) error {
	if req.Term == 0 {
		return fmt.Errorf("%w: %s without the restore's metadata term", base.ErrBadRequest, req.Op)
	}
	if meta := n.meta.raft.CurrentTerm(); req.Term > meta {
		return fmt.Errorf("%w: %s of term %d, past this node's metadata term %d", base.ErrUnavailable, req.Op, req.Term, meta)
	}
	if req.Op != protocol.OpIngest && !sameRanges(req.Ranges, wholeRing) {
		return fmt.Errorf("%w: a restore's %s covers the whole ring", base.ErrBadRequest, req.Op)
	}
	for {
		changed := n.meta.meta.Changed()
		if l := n.Layout().Restore; l != nil && l.ID == req.Restore {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s for restore %s, which does not hold the restore lock", base.ErrConflict, req.Op, req.Restore)
		}
	}
}

func sameRanges(a, b []ring.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitMigrationSeen waits until this node's layout shows a migration in
// which group g gives ranges away.
func (n *Node) waitMigrationSeen(ctx context.Context, g base.GroupID) error {
	for {
		changed := n.meta.meta.Changed()
		if m := n.Layout().Migration; m != nil && m.Sourcing(g) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w: group %d: no ring change moving its keys is known here", base.ErrUnavailable, g)
		}
	}
}

// nextGroupID is one more than any group id the layout has used, or,
// once that passes MaxGroupID, the lowest id never used (0 when none is
// left).
func nextGroupID(l *layout.Layout) base.GroupID {
	used := map[base.GroupID]bool{}
	var top base.GroupID
	for _, g := range l.Groups {
		top = max(top, g.ID)
		used[g.ID] = true
	}
	for _, g := range l.Retired {
		top = max(top, g)
		used[g] = true
	}
	if top < layout.MaxGroupID {
		return top + 1
	}
	for g := base.GroupID(1); g <= layout.MaxGroupID; g++ {
		if !used[g] {
			return g
		}
	}
	return 0
}
