package raftnode

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// Operations that move keys between groups, run on a group's leader.

// Scan pages stop at these bounds.
const (
	scanPageEntries = 512
	scanPageKeys    = 8192 // when most values are left out
	scanPageBytes   = 4 << 20
	scanExamine     = 50000
)

// ChangeRing starts a ring change: the metadata group records it and its
// leader moves the keys. It returns once the change is recorded, with the
// change as recorded (an added group without an id gets the next free one).
func (n *Node) ChangeRing(ctx context.Context, c layout.RingChange) (layout.RingChange, error) {
	before := n.RingEpoch()
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpRingChange, Group: base.MetaGroup, Change: &c})
	if err != nil {
		return c, err
	}
	if resp.Change != nil {
		c = *resp.Change
	}
	// Answer once this node routes by it too, so that what it reports next
	// shows the change.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		changed := n.meta.meta.Changed()
		if l := n.Layout(); l.Migration != nil || n.RingEpoch() > before {
			return c, nil
		}
		select {
		case <-changed:
		case <-wctx.Done():
			return c, nil
		}
	}
}

// AbortRingChange undoes the ring change in motion, if no transfer has
// flipped yet: the sources take their ranges back, the destinations drop
// their copies, and a group the change created is retired.
func (n *Node) AbortRingChange(ctx context.Context) error {
	_, err := n.do(ctx, protocol.Request{Op: protocol.OpRingAbort, Group: base.MetaGroup})
	return err
}

// wholeRing is the one range that covers the whole hash space.
var wholeRing = []ring.Range{{}}

// moverLoop carries ring changes out while this node leads the metadata
// group.
func (n *Node) moverLoop(ctx context.Context) {
	for {
		changed := n.meta.meta.Changed()
		if n.Layout().Migration != nil && n.meta.isLeader() {
			if err := n.migrate(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("ring change: will retry", "err", err)
			}
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// migrate drives every transfer of the current migration to done, then
// installs the new ring. Every step is idempotent and recorded in the
// metadata group, so that it can start again from any point.
func (n *Node) migrate(ctx context.Context) error {
	// The term marks this mover's commands: a store that has taken
	// commands of a later term (a successor, after this node lost the
	// metadata group) refuses these.
	term, leads, err := n.leadMetaCurrent(ctx)
	if !leads || err != nil {
		return err
	}
	m := n.Layout().Migration
	if m == nil {
		return nil // finished since the caller looked
	}
	if m.Aborting {
		return n.undo(ctx, term, m)
	}
	for _, t := range m.Transfers {
		if err := n.runTransfer(ctx, term, t); err != nil {
			return fmt.Errorf("transfer %d->%d: %w", t.From, t.To, err)
		}
	}
	if _, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpMigrateEnd})); err != nil {
		return err
	}
	n.log.Info("ring change complete", "change", m.Change.String(), "epoch", m.Next.Epoch)
	return nil
}

// leadMetaCurrent reports whether this node leads the metadata group and,
// if it does, returns once its layout holds every entry committed before
// its term began, with that term. A new leader may not have applied them
// yet (a restarted node starts from its last snapshot): its layout could
// still show a ring change or replica move that has since finished, and
// carrying it on would redo steps that are no longer right, such as
// dropping ranges that have since moved back.
func (n *Node) leadMetaCurrent(ctx context.Context) (term uint64, leads bool, err error) {
	term = n.meta.raft.CurrentTerm()
	if !n.meta.isLeader() {
		return term, false, nil
	}
	if err := n.meta.ensureTermCommitted(ctx, term); err != nil {
		var nl *base.NotLeaderError
		if errors.As(err, &nl) {
			return term, false, nil
		}
		return term, false, err
	}
	return term, true, nil
}

// undo takes an aborted change back: every source answers for its ranges
// again and every destination drops what was copied into them.
func (n *Node) undo(ctx context.Context, term uint64, m *layout.Migration) error {
	for _, t := range m.Transfers {
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: t.From, Ranges: t.Ranges, Term: term}); err != nil {
			return fmt.Errorf("aborting: unfencing group %d: %w", t.From, err)
		}
		if m.Change.Add != nil && t.To == m.Change.Add.Group {
			continue // the new group is retired whole
		}
		dropped, err := n.drop(ctx, term, t.To, t.Ranges)
		if err != nil {
			return fmt.Errorf("aborting: %w", err)
		}
		n.log.Info("transfer undone", "from", uint32(t.From), "to", uint32(t.To), "dropped_copies", dropped)
	}
	if _, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpMigrateAborted})); err != nil {
		return err
	}
	n.log.Info("ring change aborted", "change", m.Change.String())
	return nil
}

// drop deletes group g's keys in ranges, page by page.
func (n *Node) drop(ctx context.Context, term uint64, g base.GroupID, ranges []ring.Range) (int, error) {
	var after []byte
	dropped := 0
	for {
		resp, err := n.do(ctx, protocol.Request{Op: protocol.OpDrop, Group: g, Ranges: ranges, After: after, Limit: 1000, Term: term})
		if err != nil {
			return dropped, fmt.Errorf("dropping keys from group %d: %w", g, err)
		}
		dropped += resp.Count
		if resp.Cursor == nil {
			return dropped, nil
		}
		after = resp.Cursor
	}
}

func (n *Node) recordPhase(ctx context.Context, p layout.MigrationPhase) error {
	_, err := n.meta.apply(ctx, mustJSON(layout.Command{Op: layout.OpMigratePhase, Phase: &p}))
	return err
}

// runTransfer moves one transfer's ranges from its source to its
// destination, from whatever phase it is at.
func (n *Node) runTransfer(ctx context.Context, term uint64, t layout.TransferState) error {
	start := time.Now()
	hook := func(phase string) {
		if n.cfg.Knobs.OnTransfer != nil {
			n.cfg.Knobs.OnTransfer(t.From, t.To, phase)
		}
	}
	var watermark uint64 // modify indexes above it changed after the copy began
	if t.Phase == layout.PhaseCopy {
		hook(layout.PhaseCopy)
		var err error
		if watermark, err = n.firstCopy(ctx, term, &t); err != nil {
			return err
		}
	}
	if t.Phase == layout.PhaseFenced {
		hook(layout.PhaseFenced)
		if err := n.copyChangesAndFlip(ctx, term, &t, watermark); err != nil {
			return err
		}
	}
	if t.Phase == layout.PhaseFlipped {
		hook(layout.PhaseFlipped)
		dropped, err := n.drop(ctx, term, t.From, t.Ranges)
		if err != nil {
			return err
		}
		if err := n.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseDone, Keys: t.Total}); err != nil {
			return err
		}
		n.log.Info("transfer done", "from", uint32(t.From), "to", uint32(t.To), "dropped", dropped, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// firstCopy copies the ranges while the source still serves them, page by
// page into the destination, then fences the source, recording both
// phases; it returns the watermark above which modify indexes changed
// after the copy began.
func (n *Node) firstCopy(ctx context.Context, term uint64, t *layout.TransferState) (uint64, error) {
	var copied uint64
	first, err := n.scanRanges(ctx, t.From, *t, 0, 0, func(page []store.MovedEntry) error {
		copied += uint64(len(page))
		return n.ingest(ctx, term, *t, page)
	})
	if err != nil {
		return 0, err
	}
	if err := n.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseCopy, Keys: copied}); err != nil {
		return 0, err
	}
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpFence, Group: t.From, Ranges: t.Ranges, Term: term})
	if err != nil {
		return 0, fmt.Errorf("fencing group %d: %w", t.From, err)
	}
	t.Phase, t.FenceIndex = layout.PhaseFenced, resp.RaftIndex
	if err := n.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseFenced, Keys: copied, FenceIndex: t.FenceIndex}); err != nil {
		return 0, err
	}
	return first.watermark, nil
}

// copyChangesAndFlip runs once the source no longer changes in the ranges:
// it copies what changed since the first copy (everything, after a
// restart, when watermark is 0), removes what the source no longer has,
// compares the two sides, and flips the ranges to the destination.
func (n *Node) copyChangesAndFlip(ctx context.Context, term uint64, t *layout.TransferState, watermark uint64) error {
	fenced := time.Now()
	have := map[string]bool{}
	changed := 0
	src, err := n.scanRanges(ctx, t.From, *t, t.FenceIndex, watermark, func(page []store.MovedEntry) error {
		var newer []store.MovedEntry
		for _, e := range page {
			have[string(e.Key)] = true
			if watermark == 0 || e.ModifyIndex > watermark {
				newer = append(newer, e)
			}
		}
		changed += len(newer)
		return n.ingest(ctx, term, *t, newer)
	})
	if err != nil {
		return err
	}
	check, gone, err := n.removeDeleted(ctx, term, *t, src, have)
	if err != nil {
		return err
	}
	if check.digest != src.digest || check.keys != src.keys {
		return fmt.Errorf("%w: after the copy, group %d holds %d keys (digest %s) in the ranges, group %d %d keys (digest %s); not flipping",
			base.ErrConflict, t.To, check.keys, short(check.digest), t.From, src.keys, short(src.digest))
	}
	if _, err := n.do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: t.To, Ranges: t.Ranges, Term: term}); err != nil {
		return fmt.Errorf("unfencing group %d: %w", t.To, err)
	}
	if err := n.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseFlipped, Keys: src.keys, Total: src.keys}); err != nil {
		return err
	}
	n.log.Info("ranges flipped", "from", uint32(t.From), "to", uint32(t.To), "keys", src.keys, "changed_while_copying", changed,
		"removed", gone, "digest", short(src.digest), "fenced_for", time.Since(fenced).Round(time.Millisecond))
	t.Phase, t.Total = layout.PhaseFlipped, src.keys
	return nil
}

// removeDeleted compares the destination's ranges with the source's scan
// src; when they differ, it removes from the destination the keys the
// source no longer has (have holds the source's), and compares again. It
// returns the destination's last scan and how many keys it removed.
func (n *Node) removeDeleted(ctx context.Context, term uint64, t layout.TransferState, src scanned, have map[string]bool) (scanned, int, error) {
	check, err := n.scanRanges(ctx, t.To, t, 0, math.MaxUint64, nil)
	if err != nil || (check.digest == src.digest && check.keys == src.keys) {
		return check, 0, err
	}
	var gone []store.MovedEntry
	if _, err := n.scanRanges(ctx, t.To, t, 0, math.MaxUint64, func(page []store.MovedEntry) error {
		for _, e := range page {
			if !have[string(e.Key)] {
				gone = append(gone, store.MovedEntry{Key: e.Key, Deleted: true})
			}
		}
		return nil
	}); err != nil {
		return check, 0, err
	}
	if err := n.ingest(ctx, term, t, gone); err != nil {
		return check, 0, err
	}
	check, err = n.scanRanges(ctx, t.To, t, 0, math.MaxUint64, nil)
	return check, len(gone), err
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// scanned sums a whole scan of a transfer's ranges on one group.
type scanned struct {
	digest string
	keys   uint64
	// watermark bounds the modify indexes of the entries as they were
	// when the first page was read: an entry changed since has a higher
	// one.
	watermark uint64
}

// scanRanges reads every entry of t's ranges from group g's leader, page
// by page, after it applied minIndex, with values above the modify index
// above (0: all, math.MaxUint64: none), handing each page to fn (if set).
// The digest XORs the pages'.
func (n *Node) scanRanges(ctx context.Context, g base.GroupID, t layout.TransferState, minIndex, above uint64, fn func([]store.MovedEntry) error) (scanned, error) {
	var out scanned
	var digest [32]byte
	var after []byte
	for {
		resp, err := n.do(ctx, protocol.Request{Op: protocol.OpRangeScan, Group: g, Ranges: t.Ranges, After: after, Index: minIndex, Above: above})
		if err != nil {
			return out, fmt.Errorf("scanning group %d: %w", g, err)
		}
		p := resp.Scan
		if p == nil {
			return out, fmt.Errorf("scanning group %d: no page in the answer", g)
		}
		d, err := hex.DecodeString(p.Digest)
		if err != nil || len(d) != len(digest) {
			return out, fmt.Errorf("scanning group %d: bad digest %q", g, p.Digest)
		}
		for i := range digest {
			digest[i] ^= d[i]
		}
		out.keys += p.Keys
		if after == nil {
			out.watermark = p.Index + p.Offset
		}
		if fn != nil && len(p.Entries) > 0 {
			if err := fn(p.Entries); err != nil {
				return out, err
			}
		}
		if p.Cursor == nil {
			break
		}
		if after != nil && bytes.Compare(p.Cursor, after) <= 0 {
			return out, fmt.Errorf("scanning group %d: the cursor did not advance", g)
		}
		after = p.Cursor
	}
	out.digest = hex.EncodeToString(digest[:])
	return out, nil
}

// ingest writes entries into t's destination, in log entries of bounded
// size.
func (n *Node) ingest(ctx context.Context, term uint64, t layout.TransferState, all []store.MovedEntry) error {
	for len(all) > 0 {
		k, size := 0, 0
		for k < len(all) && k < store.MaxIngest && (k == 0 || size+len(all[k].Value)+len(all[k].Key) < scanPageBytes) {
			size += len(all[k].Value) + len(all[k].Key)
			k++
		}
		if _, err := n.do(ctx, protocol.Request{Op: protocol.OpIngest, Group: t.To, Ranges: t.Ranges, Entries: all[:k], Term: term}); err != nil {
			return fmt.Errorf("copying into group %d: %w", t.To, err)
		}
		all = all[k:]
	}
	return nil
}
