package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/store"
)

// Feeds: one reader of each group's history per node, shared by every
// change stream and blocking query the node serves. Without them, each
// stream would hold a read open on each group's leader (a connection
// between nodes per stream and group); with them, a node holds one per
// group, keeps the newest changes in memory, and a waiting stream costs a
// goroutine parked on a channel. A stream further behind than the feed's
// memory reads the history itself until it catches up.

// Bounds of a feed's memory of recent changes.
const (
	feedChanges = 4096
	feedBytes   = 8 << 20
	// feedIdle is how long a feed no one reads lives on.
	feedIdle = time.Minute
)

// feeds holds the node's feeds, by group.
type feeds struct {
	b    Watch
	mu   sync.Mutex
	all  map[base.GroupID]*feed
	ends map[base.GroupID]*endCall // the next request for where a history ends
}

func newFeeds(b Watch) *feeds {
	return &feeds{b: b, all: map[base.GroupID]*feed{}, ends: map[base.GroupID]*endCall{}}
}

// feed follows one group's history.
type feed struct {
	g base.GroupID
	// mu guards what follows: changes are the ones after start up to
	// pos, in order and without gaps (the history numbers every change),
	// taking size bytes; wake is closed when pos moves.
	mu      sync.Mutex
	changes []store.Change
	// events are the changes' event data (eventData), made once for
	// every stream: nil for a takeover.
	events   [][]byte
	start    uint64
	pos      uint64
	started  bool
	size     int
	wake     chan struct{}
	readers  int
	lastRead time.Time
	// subs are the streams following the feed, by the prefix they
	// watch; lengths counts the subscriptions of each prefix length, and
	// swept is where the feed last signalled every stream.
	subs    map[string]map[chan struct{}]struct{}
	lengths map[int]int
	swept   uint64
}

// join makes notify, a stream's channel watching prefix, a subscriber of
// group g's feed, which it returns. The feed signals it (without blocking)
// when it reads a change under prefix, a takeover, or a new start, and at
// least every feedChanges/2 changes: often enough for the stream to move
// its cursor past the others before they leave the feed's memory.
func (fs *feeds) join(g base.GroupID, notify chan struct{}, prefix []byte) *feed {
	f := fs.get(g)
	f.mu.Lock()
	if f.subs == nil {
		f.subs, f.lengths = map[string]map[chan struct{}]struct{}{}, map[int]int{}
	}
	p := string(prefix)
	if f.subs[p] == nil {
		f.subs[p] = map[chan struct{}]struct{}{}
	}
	f.subs[p][notify] = struct{}{}
	f.lengths[len(p)]++
	f.mu.Unlock()
	return f
}

// leave ends the subscription of notify, watching prefix.
func (f *feed) leave(notify chan struct{}, prefix []byte) {
	f.mu.Lock()
	p := string(prefix)
	if _, ok := f.subs[p][notify]; ok {
		delete(f.subs[p], notify)
		if len(f.subs[p]) == 0 {
			delete(f.subs, p)
		}
		if f.lengths[len(p)]--; f.lengths[len(p)] == 0 {
			delete(f.lengths, len(p))
		}
	}
	f.mu.Unlock()
	f.done()
}

// signal wakes the streams that added, the changes f just read, concern:
// those watching a prefix of one of their keys, every stream for a
// takeover or a new start, and every stream at least every feedChanges/2
// changes. The caller holds f.mu.
func (f *feed) signal(added []store.Change, all bool) {
	if all || f.pos-f.swept >= feedChanges/2 {
		f.swept = f.pos
		for _, subs := range f.subs {
			wake(subs)
		}
		return
	}
	for _, ch := range added {
		if ch.Takeover != nil {
			f.signal(nil, true)
			return
		}
		for n := range f.lengths {
			if n <= len(ch.Key) {
				wake(f.subs[string(ch.Key[:n])])
			}
		}
	}
}

func wake(subs map[chan struct{}]struct{}) {
	for c := range subs {
		select {
		case c <- struct{}{}:
		default: // already signalled
		}
	}
}

// after is what f holds after position after under prefix, without
// waiting, with each change's event data; ok is false when f cannot say:
// after is behind its memory or past what it has read, or it has not read
// yet.
func (f *feed) after(after uint64, prefix []byte) (p store.ChangesPage, events [][]byte, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if after > f.pos {
		return p, nil, false
	}
	p, ok = f.page(after, prefix)
	if !ok || len(p.Changes) == 0 {
		return p, nil, ok
	}
	events = make([][]byte, len(p.Changes))
	for i, ch := range p.Changes {
		events[i] = f.events[ch.Seq-f.start-1]
	}
	return p, events, true
}

// read returns the changes of group g under prefix after position after,
// waiting up to wait for one, as Watch.Changes does: from the group's
// feed when it holds them, else from the history.
func (fs *feeds) read(ctx context.Context, g base.GroupID, after uint64, prefix []byte, wait time.Duration) (store.ChangesPage, error) {
	f := fs.get(g)
	defer f.done()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	checked := false
	for {
		f.mu.Lock()
		p, ok := f.page(after, prefix)
		ahead := f.started && after > f.pos
		wake := f.wake
		f.mu.Unlock()
		if !ok {
			// Behind what the feed holds (or the feed has not started):
			// the history itself.
			return fs.b.Changes(ctx, g, raftnode.ChangesRequest{After: after, Prefix: prefix})
		}
		if ahead && !checked {
			// Past the feed: the feed lags, or the position is from
			// another history (before a restore), which the group's
			// leader refuses.
			checked = true
			hp, err := fs.b.Changes(ctx, g, raftnode.ChangesRequest{After: after, Prefix: prefix})
			if err != nil || len(hp.Changes) > 0 {
				return hp, err
			}
			after = max(after, hp.Next)
			continue
		}
		if len(p.Changes) > 0 {
			return p, nil
		}
		after = max(after, p.Next)
		select {
		case <-wake:
		case <-deadline.C:
			return p, nil
		case <-ctx.Done():
			return p, nil
		}
	}
}

// page is what f holds after position after, under prefix; ok is false
// when f cannot say (after is behind its memory, or it has not read yet).
// A position ahead of f answers an empty page: f has not read that far.
// The caller holds f.mu.
func (f *feed) page(after uint64, prefix []byte) (store.ChangesPage, bool) {
	if !f.started || after < f.start {
		return store.ChangesPage{}, false
	}
	p := store.ChangesPage{Next: max(after, f.pos), Last: f.pos}
	if after >= f.pos {
		p.Next = after
		return p, true
	}
	size := 0
	for _, ch := range f.changes[after-f.start:] {
		if ch.Takeover != nil || bytes.HasPrefix(ch.Key, prefix) {
			p.Changes = append(p.Changes, ch)
			size += len(ch.Key) + len(ch.Value)
			if size >= 1<<20 {
				p.Next = ch.Seq
				return p, true
			}
		}
	}
	return p, true
}

// end is where group g's history ends and begins (a page's Last and
// First), asked of its leader after the call: concurrent callers share
// one request, the next to leave after they came, so that many streams
// opening at once cost the leader one request per group, not one each.
func (fs *feeds) end(ctx context.Context, g base.GroupID) (store.ChangesPage, error) {
	fs.mu.Lock()
	c := fs.ends[g]
	if c == nil {
		c = &endCall{done: make(chan struct{})}
		fs.ends[g] = c
		go fs.fetchEnd(g, c)
	}
	fs.mu.Unlock()
	select {
	case <-c.done:
		return c.page, c.err
	case <-ctx.Done():
		return store.ChangesPage{}, fmt.Errorf("%w: group %d: %v", base.ErrUnavailable, g, ctx.Err())
	}
}

// endCall is one request for where a group's history ends.
type endCall struct {
	done chan struct{}
	page store.ChangesPage
	err  error
}

func (fs *feeds) fetchEnd(g base.GroupID, c *endCall) {
	fs.mu.Lock()
	delete(fs.ends, g) // callers from now on wait for the next request
	fs.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), watchCheck)
	defer cancel()
	c.page, c.err = fs.b.Changes(ctx, g, raftnode.ChangesRequest{FromNow: true})
	close(c.done)
}

// get returns group g's feed, starting it if needed, with one more
// reader.
func (fs *feeds) get(g base.GroupID) *feed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.all[g]
	if f == nil {
		f = &feed{g: g, wake: make(chan struct{})}
		fs.all[g] = f
		go fs.run(f)
	}
	f.mu.Lock()
	f.readers++
	f.lastRead = time.Now()
	f.mu.Unlock()
	return f
}

func (f *feed) done() {
	f.mu.Lock()
	f.readers--
	f.lastRead = time.Now()
	f.mu.Unlock()
}

// run reads f's group's history into f, from where it ends now, until no
// one has read f for feedIdle.
func (fs *feeds) run(f *feed) {
	ctx := context.Background()
	retry := 50 * time.Millisecond
	for {
		f.mu.Lock()
		idle := f.readers == 0 && time.Since(f.lastRead) > feedIdle
		started, pos := f.started, f.pos
		f.mu.Unlock()
		if idle && fs.retire(f) {
			return
		}
		var p store.ChangesPage
		var err error
		cctx, cancel := context.WithTimeout(ctx, watchPoll+watchCheck)
		if started {
			p, err = fs.b.Changes(cctx, f.g, raftnode.ChangesRequest{After: pos, Wait: watchPoll})
		} else {
			p, err = fs.b.Changes(cctx, f.g, raftnode.ChangesRequest{FromNow: true})
		}
		cancel()
		if errors.Is(err, base.ErrCompacted) {
			// The feed fell out of the history's window (or the history
			// was replaced, by a restore): start again from its end;
			// streams behind read the history and learn the same.
			f.mu.Lock()
			f.started = false
			f.mu.Unlock()
			continue
		}
		if err != nil {
			<-time.After(retry) // the group has no leader, or it is far
			retry = min(2*retry, 2*time.Second)
			continue
		}
		retry = 50 * time.Millisecond
		f.add(p, !started)
	}
}

// add takes a page into f (first: the page that starts f) and wakes its
// readers.
func (f *feed) add(p store.ChangesPage, first bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if first {
		f.changes, f.events, f.size, f.start, f.pos, f.started = nil, nil, 0, p.Next, p.Next, true
	}
	if p.Next <= f.pos && len(p.Changes) == 0 {
		return
	}
	for _, ch := range p.Changes {
		if ch.Seq != f.pos+1 {
			// Not the next change: a page that does not follow (a leader
			// with another history). Start over from this page's end.
			f.changes, f.events, f.size, f.start = nil, nil, 0, p.Next
			break
		}
		data := eventData(f.g, ch)
		f.changes = append(f.changes, ch)
		f.events = append(f.events, data)
		f.size += len(ch.Key) + len(ch.Value) + len(data)
		f.pos = ch.Seq
	}
	f.pos = max(f.pos, p.Next)
	if f.start > f.pos {
		f.start = f.pos
	}
	for len(f.changes) > feedChanges || (f.size > feedBytes && len(f.changes) > 1) {
		f.size -= len(f.changes[0].Key) + len(f.changes[0].Value) + len(f.events[0])
		f.changes[0], f.events[0] = store.Change{}, nil
		f.changes, f.events = f.changes[1:], f.events[1:]
		f.start++
	}
	close(f.wake)
	f.wake = make(chan struct{})
	f.signal(p.Changes, first)
}

// retire removes f if no one read it since the caller looked.
func (fs *feeds) retire(f *feed) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readers > 0 || time.Since(f.lastRead) <= feedIdle {
		return false
	}
	delete(fs.all, f.g)
	return true
}
