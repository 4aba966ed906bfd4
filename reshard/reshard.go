package reshard

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// Cluster is what the mover needs of the node that runs it.
type Cluster interface {
	// Layout is the node's current layout; LayoutChanged is closed at its
	// next change.
	Layout() *layout.Layout
	LayoutChanged() <-chan struct{}
	// LeadsMeta says whether this node leads the metadata group now;
	// LeadsMetaCurrent also waits until its layout covers every entry its
	// term committed, and returns that term, which marks the mover's
	// commands (a store refuses those of a mover deposed after its
	// successor acted there).
	LeadsMeta() bool
	LeadsMetaCurrent(ctx context.Context) (term uint64, leads bool, err error)
	// Record puts a metadata command through the metadata group's log.
	Record(ctx context.Context, c layout.Command) error
	// Do runs a request on its group's leader, wherever that is.
	Do(ctx context.Context, req protocol.Request) (protocol.Response, error)
	Logger() *slog.Logger
}

// Options tune the mover.
type Options struct {
	// OnTransfer, when set, is called as a transfer reaches each phase,
	// before the mover acts on it (a test hook).
	OnTransfer func(from, to base.GroupID, phase string)
}

// Mover carries ring changes out: it copies each transfer's ranges from
// its source group to its destination, fences the source, copies what
// changed, compares digests, flips the ranges and drops the source's
// copies, recording every phase in the metadata group; or undoes an
// aborted change.
type Mover struct {
	c Cluster
	o Options
}

// New returns a mover over c.
func New(c Cluster, o Options) *Mover { return &Mover{c: c, o: o} }

// Loop carries ring changes out while this node leads the metadata group,
// until ctx ends.
func (m *Mover) Loop(ctx context.Context) {
	for {
		changed := m.c.LayoutChanged()
		if m.c.Layout().Migration != nil && m.c.LeadsMeta() {
			if err := m.migrate(ctx); err != nil && ctx.Err() == nil {
				m.c.Logger().Warn("ring change: will retry", "err", err)
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
func (mv *Mover) migrate(ctx context.Context) error {
	// The term marks this mover's commands: a store that has taken
	// commands of a later term (a successor, after this node lost the
	// metadata group) refuses these.
	term, leads, err := mv.c.LeadsMetaCurrent(ctx)
	if !leads || err != nil {
		return err
	}
	m := mv.c.Layout().Migration
	if m == nil {
		return nil // finished since the caller looked
	}
	if m.Aborting {
		return mv.undo(ctx, term, m)
	}
	for _, t := range m.Transfers {
		if err := mv.runTransfer(ctx, term, t); err != nil {
			return fmt.Errorf("transfer %d->%d: %w", t.From, t.To, err)
		}
	}
	if err := mv.c.Record(ctx, layout.Command{Op: layout.OpMigrateEnd}); err != nil {
		return err
	}
	mv.c.Logger().Info("ring change complete", "change", m.Change.String(), "epoch", m.Next.Epoch)
	return nil
}

// undo takes an aborted change back: every source answers for its ranges
// again and every destination drops what was copied into them.
func (mv *Mover) undo(ctx context.Context, term uint64, m *layout.Migration) error {
	for _, t := range m.Transfers {
		if _, err := mv.c.Do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: t.From, Ranges: t.Ranges, Term: term}); err != nil {
			return fmt.Errorf("aborting: unfencing group %d: %w", t.From, err)
		}
		if m.Change.Add != nil && t.To == m.Change.Add.Group {
			continue // the new group is retired whole
		}
		dropped, err := mv.drop(ctx, term, t.To, t.Ranges)
		if err != nil {
			return fmt.Errorf("aborting: %w", err)
		}
		mv.c.Logger().Info("transfer undone", "from", uint32(t.From), "to", uint32(t.To), "dropped_copies", dropped)
	}
	if err := mv.c.Record(ctx, layout.Command{Op: layout.OpMigrateAborted}); err != nil {
		return err
	}
	mv.c.Logger().Info("ring change aborted", "change", m.Change.String())
	return nil
}

// drop deletes group g's keys in ranges, page by page.
func (m *Mover) drop(ctx context.Context, term uint64, g base.GroupID, ranges []ring.Range) (int, error) {
	var after []byte
	dropped := 0
	for {
		resp, err := m.c.Do(ctx, protocol.Request{Op: protocol.OpDrop, Group: g, Ranges: ranges, After: after, Limit: 1000, Term: term})
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

func (m *Mover) recordPhase(ctx context.Context, p layout.MigrationPhase) error {
	return m.c.Record(ctx, layout.Command{Op: layout.OpMigratePhase, Phase: &p})
}

// runTransfer moves one transfer's ranges from its source to its
// destination, from whatever phase it is at.
func (m *Mover) runTransfer(ctx context.Context, term uint64, t layout.TransferState) error {
	start := time.Now()
	hook := func(phase string) {
		if m.o.OnTransfer != nil {
			m.o.OnTransfer(t.From, t.To, phase)
		}
	}
	var watermark uint64 // modify indexes above it changed after the copy began
	if t.Phase == layout.PhaseCopy {
		hook(layout.PhaseCopy)
		var err error
		if watermark, err = m.firstCopy(ctx, term, &t); err != nil {
			return err
		}
	}
	if t.Phase == layout.PhaseFenced {
		hook(layout.PhaseFenced)
		if err := m.copyChangesAndFlip(ctx, term, &t, watermark); err != nil {
			return err
		}
	}
	if t.Phase == layout.PhaseFlipped {
		hook(layout.PhaseFlipped)
		dropped, err := m.drop(ctx, term, t.From, t.Ranges)
		if err != nil {
			return err
		}
		if err := m.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseDone, Keys: t.Total}); err != nil {
			return err
		}
		m.c.Logger().Info("transfer done", "from", uint32(t.From), "to", uint32(t.To), "dropped", dropped, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// firstCopy copies the ranges while the source still serves them, page by
// page into the destination, then fences the source, recording both
// phases; it returns the watermark above which modify indexes changed
// after the copy began.
func (m *Mover) firstCopy(ctx context.Context, term uint64, t *layout.TransferState) (uint64, error) {
	var copied uint64
	first, err := m.scanRanges(ctx, t.From, *t, 0, 0, func(page []store.MovedEntry) error {
		copied += uint64(len(page))
		return m.ingest(ctx, term, *t, page)
	})
	if err != nil {
		return 0, err
	}
	if err := m.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseCopy, Keys: copied}); err != nil {
		return 0, err
	}
	resp, err := m.c.Do(ctx, protocol.Request{Op: protocol.OpFence, Group: t.From, Ranges: t.Ranges, Term: term})
	if err != nil {
		return 0, fmt.Errorf("fencing group %d: %w", t.From, err)
	}
	t.Phase, t.FenceIndex, t.FenceSeq, t.FenceFloor = layout.PhaseFenced, resp.RaftIndex, resp.ChangeSeq, resp.IndexFloor
	if err := m.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseFenced, Keys: copied,
		FenceIndex: t.FenceIndex, FenceSeq: t.FenceSeq, FenceFloor: t.FenceFloor}); err != nil {
		return 0, err
	}
	return first.watermark, nil
}

// copyChangesAndFlip runs once the source no longer changes in the ranges:
// it copies what changed since the first copy (everything, after a
// restart, when watermark is 0), removes what the source no longer has,
// compares the two sides, and flips the ranges to the destination.
func (m *Mover) copyChangesAndFlip(ctx context.Context, term uint64, t *layout.TransferState, watermark uint64) error {
	fenced := time.Now()
	have := map[string]bool{}
	changed := 0
	src, err := m.scanRanges(ctx, t.From, *t, t.FenceIndex, watermark, func(page []store.MovedEntry) error {
		var newer []store.MovedEntry
		for _, e := range page {
			have[string(e.Key)] = true
			if watermark == 0 || e.ModifyIndex > watermark {
				newer = append(newer, e)
			}
		}
		changed += len(newer)
		return m.ingest(ctx, term, *t, newer)
	})
	if err != nil {
		return err
	}
	check, gone, err := m.removeDeleted(ctx, term, *t, src, have)
	if err != nil {
		return err
	}
	if check.digest != src.digest || check.keys != src.keys {
		return fmt.Errorf("%w: after the copy, group %d holds %d keys (digest %s) in the ranges, group %d %d keys (digest %s); not flipping",
			base.ErrConflict, t.To, check.keys, short(check.digest), t.From, src.keys, short(src.digest))
	}
	// Target, Index and Floor name the source, its history's position at
	// the fence and its index floor: the destination's history records
	// the takeover, so that watches deliver the source's changes to the
	// ranges first, and its modify indexes go above the source's.
	if _, err := m.c.Do(ctx, protocol.Request{Op: protocol.OpUnfence, Group: t.To, Ranges: t.Ranges, Term: term,
		Target: t.From, Index: t.FenceSeq, Floor: t.FenceFloor}); err != nil {
		return fmt.Errorf("unfencing group %d: %w", t.To, err)
	}
	if err := m.recordPhase(ctx, layout.MigrationPhase{From: t.From, To: t.To, Phase: layout.PhaseFlipped, Keys: src.keys, Total: src.keys}); err != nil {
		return err
	}
	m.c.Logger().Info("ranges flipped", "from", uint32(t.From), "to", uint32(t.To), "keys", src.keys, "changed_while_copying", changed,
		"removed", gone, "digest", short(src.digest), "fenced_for", time.Since(fenced).Round(time.Millisecond))
	t.Phase, t.Total = layout.PhaseFlipped, src.keys
	return nil
}

// removeDeleted compares the destination's ranges with the source's scan
// src; when they differ, it removes from the destination the keys the
// source no longer has (have holds the source's), and compares again. It
// returns the destination's last scan and how many keys it removed.
func (m *Mover) removeDeleted(ctx context.Context, term uint64, t layout.TransferState, src scanned, have map[string]bool) (scanned, int, error) {
	check, err := m.scanRanges(ctx, t.To, t, 0, math.MaxUint64, nil)
	if err != nil || (check.digest == src.digest && check.keys == src.keys) {
		return check, 0, err
	}
	var gone []store.MovedEntry
	if _, err := m.scanRanges(ctx, t.To, t, 0, math.MaxUint64, func(page []store.MovedEntry) error {
		for _, e := range page {
			if !have[string(e.Key)] {
				gone = append(gone, store.MovedEntry{Key: e.Key, Deleted: true})
			}
		}
		return nil
	}); err != nil {
		return check, 0, err
	}
	if err := m.ingest(ctx, term, t, gone); err != nil {
		return check, 0, err
	}
	check, err = m.scanRanges(ctx, t.To, t, 0, math.MaxUint64, nil)
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
func (m *Mover) scanRanges(ctx context.Context, g base.GroupID, t layout.TransferState, minIndex, above uint64, fn func([]store.MovedEntry) error) (scanned, error) {
	var out scanned
	var digest [32]byte
	var after []byte
	for {
		resp, err := m.c.Do(ctx, protocol.Request{Op: protocol.OpRangeScan, Group: g, Ranges: t.Ranges, After: after, Index: minIndex, Above: above})
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
func (m *Mover) ingest(ctx context.Context, term uint64, t layout.TransferState, all []store.MovedEntry) error {
	for len(all) > 0 {
		k, size := 0, 0
		for k < len(all) && k < store.MaxIngest && (k == 0 || size+len(all[k].Value)+len(all[k].Key) < protocol.MaxPageBytes) {
			size += len(all[k].Value) + len(all[k].Key)
			k++
		}
		if _, err := m.c.Do(ctx, protocol.Request{Op: protocol.OpIngest, Group: t.To, Ranges: t.Ranges, Entries: all[:k], Term: term}); err != nil {
			return fmt.Errorf("copying into group %d: %w", t.To, err)
		}
		all = all[k:]
	}
	return nil
}
