package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/store"
)

// watchPrefix is the path prefix of the change stream.
const watchPrefix = "/v1/watch/"

// Timings of a change stream.
const (
	// watchPoll is how long a group's leader holds a read of its history
	// open for a change.
	watchPoll = 15 * time.Second
	// watchWriteTimeout cuts off a client that takes no more of the
	// stream for that long: the stream holds no more than what it is
	// writing for it, and its position falls out of the history in time.
	watchWriteTimeout = 30 * time.Second
	// watchCheck bounds the check, before the stream answers, that every
	// group still serves the position asked for.
	watchCheck = 10 * time.Second
)

// watchStream is one GET /v1/watch/{prefix}. Its handler's goroutine is
// all it runs: the node's feeds (feed.go) wake it when a group's history
// moves, and it reads what follows its cursor from their memory (or, when
// it is further behind, from the history itself), writing each change as
// a server-sent event with the whole cursor after it as its id.
type watchStream struct {
	a      *API
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	prefix []byte
	cursor api.Cursor
	id     raftnode.Identity
	hasID  bool
	// feeds are the followed groups' feeds, which signal notify (one
	// token at most) when they move.
	feeds  map[base.GroupID]*feed
	notify chan struct{}
	buf    []byte
	// listed holds the keys an initial list showed, with their modify
	// indexes, until the cursor is past listedUntil in every group.
	listed      map[string]uint64
	listedUntil api.Cursor
	// sent counts changes, for the broken builds' drops and repeats.
	sent int
	// holds are the groups whose delivery waits at a takeover
	// (watch_order.go), left the cursor's positions of the groups that
	// left the layout, and retry says a group's history could not be read
	// and is to be read again soon.
	holds map[base.GroupID]store.Takeover
	left  api.Cursor
	retry bool
	// deadlineSet is when the write deadline was last moved.
	deadlineSet time.Time
}

// brokenWatchEvery is how often a broken build drops or repeats a change.
const brokenWatchEvery = 25

// watch answers GET /v1/watch/{prefix}[?since=CURSOR][&initial=true] with
// the changes under prefix as text/event-stream (see the README).
func (a *API) watch(w http.ResponseWriter, r *http.Request) error {
	prefix, err := parsePrefixPath(r.URL.EscapedPath(), watchPrefix, a.cfg.MaxKeyBytes)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	since, hasSince := q.Get("since"), q.Has("since")
	if !hasSince {
		since, hasSince = r.Header.Get("Last-Event-ID"), r.Header.Get("Last-Event-ID") != ""
	}
	initial := false
	if v := q.Get("initial"); v != "" {
		if initial, err = strconv.ParseBool(v); err != nil {
			return badRequest(fmt.Sprintf("initial %q: want true or false", v))
		}
	}
	if initial && hasSince {
		return badRequest("initial=true starts from the current state; it does not go with since (or Last-Event-ID)")
	}
	cursor, err := api.ParseCursor(since)
	if err != nil {
		return err
	}
	if n := a.watching.Add(1); n > int64(a.cfg.MaxWatchStreams) {
		a.watching.Add(-1)
		return fmt.Errorf("%w: %d change streams are open on this node, the most it serves (--max-watch-streams); watch through another node, or later",
			base.ErrUnavailable, a.cfg.MaxWatchStreams)
	}
	defer a.watching.Add(-1)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &watchStream{a: a, w: w, rc: http.NewResponseController(w), r: r.WithContext(ctx), prefix: prefix, cursor: cursor,
		feeds: map[base.GroupID]*feed{}, notify: make(chan struct{}, 1), holds: map[base.GroupID]store.Takeover{}, left: api.Cursor{}}
	s.id, s.hasID = identityOf(r.Context())
	defer s.stop()
	groups, layoutChanged := a.b.DataGroups()
	if !hasSince {
		if err := s.startAtTheEnd(ctx, groups); err != nil {
			return err
		}
	} else if err := s.checkServed(ctx, groups); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if initial {
		if err := s.sendInitial(ctx); err != nil {
			s.fail(err)
			return nil
		}
	}
	s.regroup(groups)
	if err := s.flush(); err != nil {
		return nil
	}
	hb := time.NewTicker(a.cfg.WatchHeartbeat)
	defer hb.Stop()
	// soon fires while a hold waits or a read is to be tried again.
	var soon <-chan time.Time
	for {
		if err := s.pull(ctx); err != nil {
			s.fail(err)
			return nil
		}
		soon = nil
		if len(s.holds) > 0 || s.retry {
			soon = time.After(holdCheck)
		}
		select {
		case <-s.notify:
		case <-soon:
			if err := s.checkHolds(ctx); err != nil {
				s.fail(err)
				return nil
			}
		case <-hb.C:
			if err := s.stillAllowed(); err != nil {
				s.fail(err)
				return nil
			}
			s.buf = append(s.buf, ": heartbeat\n\n"...)
			if err := s.flush(); err != nil {
				return nil
			}
		case <-layoutChanged:
			groups, layoutChanged = a.b.DataGroups()
			s.regroup(groups)
		case <-ctx.Done():
			return nil
		}
	}
}

// startAtTheEnd sets the cursor to where every group's history ends: the
// stream starts at the current state.
func (s *watchStream) startAtTheEnd(ctx context.Context, groups []base.GroupID) error {
	cctx, cancel := context.WithTimeout(ctx, watchCheck)
	defer cancel()
	for _, g := range groups {
		p, err := s.a.feeds.end(cctx, g)
		if err != nil {
			return err
		}
		s.cursor[g] = p.Last
	}
	return nil
}

// checkServed reads, without waiting, a page of every group at the
// cursor, so that a position no longer served is answered 410 before the
// stream begins; the body names the oldest cursor still served.
func (s *watchStream) checkServed(ctx context.Context, groups []base.GroupID) error {
	cctx, cancel := context.WithTimeout(ctx, watchCheck)
	defer cancel()
	var mu sync.Mutex
	var first error
	oldest := s.cursor.Clone()
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b, err := s.a.feeds.end(cctx, g); err == nil && s.cursor[g]+1 >= b.First && s.cursor[g] <= b.Last {
				return // served; a position past the end is asked of the leader itself
			}
			_, err := s.a.b.Changes(cctx, g, raftnode.ChangesRequest{After: s.cursor[g], Prefix: s.prefix})
			var ce *base.CompactedError
			if !errors.As(err, &ce) {
				return // served, or to be retried by the follower
			}
			mu.Lock()
			defer mu.Unlock()
			oldest[g] = ce.First - 1
			if first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return &compactedCursor{err: first, oldest: oldest}
	}
	return nil
}

// compactedCursor is a 410 whose body names the oldest cursor served.
type compactedCursor struct {
	err    error
	oldest api.Cursor
}

func (e *compactedCursor) Error() string {
	return fmt.Sprintf("%v; the oldest cursor served is %s (reload the state, then watch from there)", e.err, e.oldest)
}
func (e *compactedCursor) Unwrap() error { return e.err }

// appendEvent lays one change out as a server-sent event.
// data is the change's event data, when a feed made it already.
func (s *watchStream) appendEvent(g base.GroupID, ch store.Change, data []byte) {
	if data == nil {
		data = eventData(g, ch)
	}
	s.buf = append(s.buf, "id: "...)
	s.buf = s.cursor.AppendText(s.buf)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
}

// eventData is the JSON of change ch of group g as an event.
func eventData(g base.GroupID, ch store.Change) []byte {
	if ch.Takeover != nil {
		return nil
	}
	e := api.WatchEvent{Type: api.EventPut, Value: ch.Value, Index: ch.Index, Group: g, RaftIndex: ch.RaftIndex}
	if ch.Delete {
		e.Type, e.Value = api.EventDelete, nil
	}
	api.EventKey(&e, ch.Key)
	data, _ := json.Marshal(e)
	return data
}

// flush writes what is buffered, within watchWriteTimeout (the deadline
// moves on at most once a second: setting it costs as much as a small
// write).
func (s *watchStream) flush() error {
	if now := time.Now(); now.Sub(s.deadlineSet) > time.Second {
		_ = s.rc.SetWriteDeadline(now.Add(watchWriteTimeout))
		s.deadlineSet = now
	}
	if len(s.buf) > 0 {
		if _, err := s.w.Write(s.buf); err != nil {
			return err
		}
		s.buf = s.buf[:0]
	}
	return s.rc.Flush()
}

// fail ends the stream with an error event: {"error","code"} and, for a
// compacted position, the oldest cursor served.
func (s *watchStream) fail(err error) {
	body := map[string]any{"error": err.Error(), "code": base.Code(err)}
	var ce *base.CompactedError
	if errors.As(err, &ce) {
		oldest := s.cursor.Clone()
		oldest[ce.Group] = ce.First - 1
		body["cursor"] = oldest.String()
	}
	data, _ := json.Marshal(body)
	s.buf = append(s.buf, "event: error\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	_ = s.flush()
}

// stillAllowed checks again, with access control on, that the stream's
// token exists and may still read the prefix.
func (s *watchStream) stillAllowed() error {
	if !s.hasID {
		return nil
	}
	id, err := s.a.authenticate(s.r, raftnode.AuthOptions{})
	if err != nil {
		return err
	}
	s.id = id
	return nil
}

// stop leaves the feeds.
func (s *watchStream) stop() {
	for _, f := range s.feeds {
		f.leave(s.notify, s.prefix)
	}
}

// regroup follows the groups of a new layout: a new group from its first
// change (a group the cursor does not name is newer than it), and none
// that left.
func (s *watchStream) regroup(groups []base.GroupID) {
	now := map[base.GroupID]bool{}
	for _, g := range groups {
		now[g] = true
		if s.feeds[g] == nil {
			if _, ok := s.cursor[g]; !ok {
				s.cursor[g] = 0
			}
			s.feeds[g] = s.a.feeds.join(g, s.notify, s.prefix)
		}
	}
	for g, f := range s.feeds {
		if !now[g] {
			f.leave(s.notify, s.prefix)
			delete(s.feeds, g)
			s.left[g] = s.cursor[g]
			delete(s.cursor, g)
			delete(s.holds, g)
		}
	}
}

// sendInitial writes every key under the prefix as a put (raft_index 0:
// it comes from the state, not from one change), then notes where every
// group's history stood once the list was read. A change up to there
// that the list already showed (the key listed at its index or later) is
// not sent again; any other change after the cursor is.
func (s *watchStream) sendInitial(ctx context.Context) error {
	release, err := s.a.listSlot(ctx)
	if err != nil {
		return err
	}
	defer release()
	s.listed = map[string]uint64{}
	err = s.a.b.ListEach(ctx, raftnode.ListOptions{Prefix: s.prefix, Consistency: protocol.Linearizable}, func(kv protocol.KV) error {
		if s.hasID && !s.id.Allows(kv.Key, acl.Read) {
			return nil
		}
		s.listed[string(kv.Key)] = kv.ModifyIndex
		s.appendEvent(kv.Group, store.Change{Key: kv.Key, Value: kv.Value, Index: kv.ModifyIndex}, nil)
		if len(s.buf) >= listFlushBytes {
			return s.flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.listedUntil = api.Cursor{}
	for g := range s.cursor {
		p, err := s.a.b.Changes(ctx, g, raftnode.ChangesRequest{FromNow: true})
		if err != nil {
			return err
		}
		s.listedUntil[g] = p.Last
	}
	return nil
}

// shownByList says whether the initial list already showed change ch of
// group g; it forgets the list once every group is past where it stood.
func (s *watchStream) shownByList(g base.GroupID, ch store.Change) bool {
	if s.listed == nil {
		return false
	}
	if ch.Seq > s.listedUntil[g] {
		for g2, until := range s.listedUntil {
			if s.cursor[g2] < until {
				return false
			}
		}
		s.listed, s.listedUntil = nil, nil
		return false
	}
	m, ok := s.listed[string(ch.Key)]
	return ok && ch.Index <= m
}
