package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/store"
)

// The order of a stream. Each group's changes go out in the order of its
// history; groups interleave as their pages come. A key's changes stay in
// order across a ring change that moves it: its new group's history
// records, where it takes the ranges over, how far the old group's
// history went then (store.Takeover), and the stream delivers nothing of
// the new group past that point until it has delivered the old group's
// history that far.

// holdCheck is how often a stream holding a group at a takeover asks the
// source group's history whether it has read far enough.
const holdCheck = 250 * time.Millisecond

// pull delivers what every followed group's history holds after the
// cursor, from its feed's memory or, further behind (or past what the feed
// has read), from the history itself; a group that could not be read is
// tried again soon (retry).
func (s *watchStream) pull(ctx context.Context) error {
	s.retry = false
	for progress := true; progress; {
		progress = false
		for g, f := range s.feeds {
			p, events, ok := f.after(s.cursor[g], s.prefix)
			if !ok {
				cctx, cancel := context.WithTimeout(ctx, watchCheck)
				hp, err := s.a.b.Changes(cctx, g, raftnode.ChangesRequest{After: s.cursor[g], Prefix: s.prefix})
				cancel()
				if errors.Is(err, base.ErrCompacted) || errors.Is(err, base.ErrBadRequest) {
					return err
				}
				if err != nil {
					s.retry = true // no leader, or it is far: soon again
					continue
				}
				p = hp
			}
			if s.deliverFrom(g, p, events) {
				progress = true
			}
			if len(s.buf) >= listFlushBytes {
				if err := s.flush(); err != nil {
					return err
				}
			}
		}
	}
	for g, t := range s.holds {
		if err := s.sourceGone(g, t); err != nil {
			return err
		}
	}
	if len(s.buf) == 0 {
		return nil
	}
	return s.flush()
}

// deliverFrom writes p's changes after the cursor of group g (with their
// event data from events, when not nil), until the page ends or a takeover
// holds g; it says whether the cursor moved.
func (s *watchStream) deliverFrom(g base.GroupID, p store.ChangesPage, events [][]byte) (moved bool) {
	for i, ch := range p.Changes {
		var data []byte
		if events != nil {
			data = events[i]
		}
		if ch.Seq <= s.cursor[g] {
			continue
		}
		if t := ch.Takeover; t != nil {
			if !s.readUpTo(base.GroupID(t.From), t.Seq) {
				s.holds[g] = *t
				return moved
			}
			delete(s.holds, g)
			s.cursor[g], moved = ch.Seq, true
			continue
		}
		s.cursor[g], moved = ch.Seq, true
		if (s.hasID && !s.id.Allows(ch.Key, acl.Read)) || s.shownByList(g, ch) {
			continue
		}
		if brokenWatchDrop || brokenWatchRepeat {
			s.sent++
			if s.sent%brokenWatchEvery == 0 {
				if brokenWatchDrop {
					continue
				}
				s.appendEvent(g, ch, data)
			}
		}
		s.appendEvent(g, ch, data)
	}
	delete(s.holds, g)
	if p.Next > s.cursor[g] {
		s.cursor[g], moved = p.Next, true
	}
	return moved
}

// readUpTo says whether the stream has delivered group g's history up to
// seq.
func (s *watchStream) readUpTo(g base.GroupID, seq uint64) bool {
	if n, ok := s.cursor[g]; ok {
		return n >= seq
	}
	return s.left[g] >= seq
}

// sourceGone fails a hold whose source group the stream no longer
// follows and had not read far enough: its changes are gone with it.
func (s *watchStream) sourceGone(g base.GroupID, t store.Takeover) error {
	from := base.GroupID(t.From)
	if s.feeds[from] != nil || s.readUpTo(from, t.Seq) {
		return nil
	}
	return fmt.Errorf("%w: group %d took keys over from group %d, which left the cluster before this stream read its changes to them (up to %d); read the keys again and watch from the cursor",
		base.ErrCompacted, g, from, t.Seq)
}

// checkHolds asks each held group's source whether the stream has read
// its history far enough under the prefix: a source with no change there
// after the stream's position (its feed may not have read that far)
// releases the hold at once.
func (s *watchStream) checkHolds(ctx context.Context) error {
	for _, t := range s.holds {
		from := base.GroupID(t.From)
		if s.feeds[from] == nil || s.readUpTo(from, t.Seq) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p, err := s.a.b.Changes(cctx, from, raftnode.ChangesRequest{After: s.cursor[from], Prefix: s.prefix})
		cancel()
		if err == nil && len(p.Changes) == 0 && p.Next > s.cursor[from] {
			s.cursor[from] = p.Next
		}
	}
	return nil
}
