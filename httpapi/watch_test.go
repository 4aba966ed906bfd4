package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/store"
)

// sseEvent is one server-sent event as a client reads it.
type sseEvent struct {
	id, event string
	data      api.WatchEvent
	raw       string
}

// sseStream reads the events of an open watch.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
}

// openWatch opens GET path on srv and reads its events in the background.
func openWatch(t *testing.T, srv *httptest.Server, path string, header http.Header) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &sseStream{resp: resp, events: make(chan sseEvent, 100)}
	if resp.StatusCode != 200 {
		return s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("watch answered Content-Type %q", ct)
	}
	go func() {
		defer close(s.events)
		br := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.raw != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.raw = line[6:]
				json.Unmarshal([]byte(ev.raw), &ev.data)
			}
		}
	}()
	return s
}

// next returns the stream's next event, failing after a deadline.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

func describeEvent(ev sseEvent) string {
	if ev.event != "" {
		return ev.event + " " + ev.raw
	}
	return fmt.Sprintf("%s %s=%s@%d id=%s", ev.data.Type, ev.data.Key, ev.data.Value, ev.data.Index, ev.id)
}

func mustWrite(t *testing.T, srv *httptest.Server, method, key, value string) {
	t.Helper()
	resp, body := rawDo(t, srv, method, "/v1/kv/"+key, value)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, key, resp.StatusCode, body)
	}
}

// A watch streams the changes under its prefix, each with the cursor after
// it as its id; since or Last-Event-ID resumes right after an event.
func TestWatchStreamsAndResumes(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	mustWrite(t, srv, "PUT", "app/old", "before") // before the watch: not sent
	w := openWatch(t, srv, "/v1/watch/app/", nil)
	if w.resp.StatusCode != 200 {
		t.Fatalf("watch answered %d", w.resp.StatusCode)
	}
	mustWrite(t, srv, "PUT", "app/a", "1")
	mustWrite(t, srv, "PUT", "other", "x")
	mustWrite(t, srv, "PUT", "app/b", "2")
	mustWrite(t, srv, "DELETE", "app/a", "")
	want := []string{"put app/a=1@2 id=1:2", "put app/b=2@4 id=1:4", "delete app/a=@5 id=1:5"}
	var got []sseEvent
	for range want {
		got = append(got, w.next(t))
	}
	for i, ev := range got {
		if d := describeEvent(ev); d != want[i] {
			t.Errorf("event %d: %s, want %s", i, d, want[i])
		}
		if ev.data.Group != 1 || ev.data.RaftIndex != ev.data.Index {
			t.Errorf("event %d: group %d raft index %d", i, ev.data.Group, ev.data.RaftIndex)
		}
	}
	if !strings.Contains(got[2].raw, `"value":null`) {
		t.Errorf("a delete event carries %s, want a null value", got[2].raw)
	}
	// Resume after the first event, by query and by header.
	for _, open := range []func() *sseStream{
		func() *sseStream { return openWatch(t, srv, "/v1/watch/app/?since="+got[0].id, nil) },
		func() *sseStream {
			return openWatch(t, srv, "/v1/watch/app/", http.Header{"Last-Event-Id": {got[0].id}})
		},
	} {
		r := open()
		for _, w := range want[1:] {
			if d := describeEvent(r.next(t)); d != w {
				t.Errorf("resumed: %s, want %s", d, w)
			}
		}
	}
	// From the start of the history: everything, the put before the watch
	// included.
	r := openWatch(t, srv, "/v1/watch/app/?since=1:0", nil)
	if d := describeEvent(r.next(t)); d != "put app/old=before@1 id=1:1" {
		t.Errorf("from 1:0: %s", d)
	}
}

// initial=true sends the keys under the prefix first, then only the
// changes they do not already show.
func TestWatchInitialState(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	mustWrite(t, srv, "PUT", "app/a", "1")
	mustWrite(t, srv, "PUT", "app/b", "2")
	mustWrite(t, srv, "PUT", "zzz", "3")
	w := openWatch(t, srv, "/v1/watch/app/?initial=true", nil)
	for _, want := range []string{"put app/a=1@1 id=1:3", "put app/b=2@2 id=1:3"} {
		if d := describeEvent(w.next(t)); d != want {
			t.Errorf("initial: %s, want %s", d, want)
		}
	}
	mustWrite(t, srv, "PUT", "app/a", "4")
	if d := describeEvent(w.next(t)); d != "put app/a=4@4 id=1:4" {
		t.Errorf("after the initial state: %s", d)
	}
}

// A cursor older than the history kept is answered 410 compacted, naming
// the oldest cursor served; bad parameters are 400 and open no stream.
func TestWatchRefusals(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	for i := 0; i < 5; i++ {
		mustWrite(t, srv, "PUT", fmt.Sprintf("k%d", i), "v")
	}
	f.compactTo(3)
	resp, body := rawDo(t, srv, "GET", "/v1/watch/?since=1:1", "")
	wantError(t, resp, body, 410, "compacted")
	if !strings.Contains(string(body), "oldest cursor served is 1:2") {
		t.Errorf("410 body %s does not name the oldest cursor 1:2", body)
	}
	w := openWatch(t, srv, "/v1/watch/?since=1:2", nil)
	if d := describeEvent(w.next(t)); d != "put k2=v@3 id=1:3" {
		t.Errorf("from the oldest cursor: %s", d)
	}
	resp, body = rawDo(t, srv, "GET", "/v1/watch/?since=1:99", "")
	wantError(t, resp, body, 410, "compacted")
	for _, q := range []string{"?since=nonsense", "?since=0:1", "?since=1:1,1:2", "?initial=perhaps", "?initial=true&since=1:1"} {
		resp, body := rawDo(t, srv, "GET", "/v1/watch/"+q, "")
		wantError(t, resp, body, 400, "bad_request")
	}
	resp, body = rawDo(t, srv, "POST", "/v1/watch/", "")
	wantError(t, resp, body, 405, "method_not_allowed")
}

// With access control on, a watch shows only the keys its token may read,
// and ends with an error event once the token is deleted.
func TestWatchShowsOnlyReadableKeys(t *testing.T) {
	fx := newACLFixture(t)
	f := newFake()
	f.acl = fx.state
	cfg := DefaultConfig()
	cfg.WatchHeartbeat = 50 * time.Millisecond // when the token is checked again
	a, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	secret := fx.secrets["read app/"]
	w := openWatch(t, srv, "/v1/watch/", http.Header{hdrToken: {secret}})
	if w.resp.StatusCode != 200 {
		t.Fatalf("watch as read app/: %d", w.resp.StatusCode)
	}
	for _, k := range []string{"secret", "app/1", "apple", "app/2"} {
		if _, _, err := f.Put(context.Background(), []byte(k), []byte("v"), raftnode.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"put app/1=v@2 id=1:2", "put app/2=v@4 id=1:4"} {
		if d := describeEvent(w.next(t)); d != want {
			t.Errorf("filtered: %s, want %s", d, want)
		}
	}
	// Delete the token: the stream ends with an error event at its next
	// heartbeat.
	var accessor string
	for _, tok := range fx.state.Tokens {
		if tok.Matches(secret) {
			accessor = tok.AccessorID
		}
	}
	if accessor == "" {
		t.Fatal("no token for the secret")
	}
	f.mu.Lock()
	next, err := f.acl.With(&layout.ACLChange{Op: "token_delete", Name: accessor})
	if err != nil {
		t.Fatal(err)
	}
	f.acl = next
	f.mu.Unlock()
	ev := w.next(t)
	if ev.event != "error" || !strings.Contains(ev.raw, `"code":"unauthorized"`) {
		t.Errorf("after the token's deletion: %s, want an error event, unauthorized", describeEvent(ev))
	}
	if _, ok := <-w.events; ok {
		t.Error("the stream goes on after its error event")
	}
	io.Copy(io.Discard, w.resp.Body)
}

// blockingGet runs a GET in the background and hands its answer over.
func blockingGet(t *testing.T, srv *httptest.Server, path string) <-chan [3]string {
	t.Helper()
	out := make(chan [3]string, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			out <- [3]string{"error", err.Error()}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		out <- [3]string{fmt.Sprint(resp.StatusCode), string(body), resp.Header.Get(hdrKVIndex) + resp.Header.Get(hdrKVCursor)}
	}()
	return out
}

func answer3(t *testing.T, ch <-chan [3]string) [3]string {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
	}
	return [3]string{}
}

// A GET with index= answers at once when the key's modify index differs,
// otherwise once the key changes (or is created), with its new state; a
// wait that runs out answers the state as it is.
func TestBlockingGet(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	mustWrite(t, srv, "PUT", "k", "v1") // index 1
	if a := answer3(t, blockingGet(t, srv, "/v1/kv/k?index=0&wait=1m")); a != [3]string{"200", "v1", "1"} {
		t.Fatalf("index differing: %q", a)
	}
	ch := blockingGet(t, srv, "/v1/kv/k?index=1&wait=1m")
	mustWrite(t, srv, "PUT", "unrelated", "x") // changes nothing for k
	mustWrite(t, srv, "PUT", "k", "v2")
	if a := answer3(t, ch); a != [3]string{"200", "v2", "3"} {
		t.Fatalf("woken by the put: %q, want v2 at index 3", a)
	}
	ch = blockingGet(t, srv, "/v1/kv/new?index=0&wait=1m")
	mustWrite(t, srv, "PUT", "new", "born")
	if a := answer3(t, ch); a != [3]string{"200", "born", "4"} {
		t.Fatalf("woken by the creation: %q", a)
	}
	ch = blockingGet(t, srv, "/v1/kv/new?index=4&wait=1m")
	mustWrite(t, srv, "DELETE", "new", "")
	if a := answer3(t, ch); a[0] != "404" || a[2] != "0" {
		t.Fatalf("woken by the delete: %q, want 404 with X-KV-Index 0", a)
	}
	if a := answer3(t, blockingGet(t, srv, "/v1/kv/k?index=3&wait=20ms")); a != [3]string{"200", "v2", "3"} {
		t.Fatalf("after the wait: %q", a)
	}
	for _, q := range []string{"?index=x", "?index=-1", "?index=1&wait=soon", "?index=1&wait=-5s", "?recurse&index=nonsense"} {
		resp, body := rawDo(t, srv, "GET", "/v1/kv/k"+q, "")
		wantError(t, resp, body, 400, "bad_request")
	}
}

// A list carries X-KV-Cursor; a list given it as index= answers once a
// key under its prefix changes after it.
func TestBlockingList(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	mustWrite(t, srv, "PUT", "app/a", "1")
	resp, body := rawDo(t, srv, "GET", "/v1/kv/app/?recurse&keys", "")
	cursor := resp.Header.Get(hdrKVCursor)
	if resp.StatusCode != 200 || cursor != "1:1" {
		t.Fatalf("list: %d %s, cursor %q; want 200 and 1:1", resp.StatusCode, body, cursor)
	}
	ch := blockingGet(t, srv, "/v1/kv/app/?recurse&keys&wait=1m&index="+cursor)
	mustWrite(t, srv, "PUT", "other", "x") // outside the prefix: no answer for it
	mustWrite(t, srv, "PUT", "app/b", "2")
	if a := answer3(t, ch); a[0] != "200" || strings.TrimSpace(a[1]) != `["app/a","app/b"]` || a[2] != "1:3" {
		t.Fatalf("woken list: %q, want both keys and cursor 1:3", a)
	}
	// A cursor the history no longer serves answers at once.
	f.compactTo(3)
	if a := answer3(t, blockingGet(t, srv, "/v1/kv/app/?recurse&keys&wait=1m&index=1:0")); a[0] != "200" {
		t.Fatalf("with a compacted cursor: %q", a)
	}
}

// Many streams share one read of the group's history: the node holds one
// waiting read per group, whatever the number of streams.
func TestWatchStreamsShareAFeed(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	var streams []*sseStream
	for i := 0; i < 50; i++ {
		streams = append(streams, openWatch(t, srv, "/v1/watch/k", nil))
	}
	for i := 0; i < 10; i++ {
		mustWrite(t, srv, "PUT", fmt.Sprintf("k%d", i), "v")
	}
	for i, s := range streams {
		for j := 0; j < 10; j++ {
			if ev := s.next(t); ev.data.Key != fmt.Sprintf("k%d", j) {
				t.Fatalf("stream %d, event %d: %s", i, j, describeEvent(ev))
			}
		}
	}
	if m := f.maxWaiting.Load(); m > 1 {
		t.Errorf("%d reads of the history waited at once for 50 streams, want 1 (the feed's)", m)
	}
}

// A key moved from group 1 to group 2 keeps its order in a stream that
// reads group 2's history first: group 2's changes after its takeover
// wait until group 1's history is delivered up to the takeover's
// position; and a takeover from a group that left before the stream read
// it far enough ends the stream, never skipping its changes.
func TestWatchOrderAcrossATakeover(t *testing.T) {
	rec := httptest.NewRecorder()
	s := &watchStream{a: &API{}, w: rec, rc: http.NewResponseController(rec), cursor: api.Cursor{1: 3, 2: 0},
		feeds: map[base.GroupID]*feed{}, holds: map[base.GroupID]store.Takeover{}, left: api.Cursor{}}
	put := func(seq uint64, key string, index uint64) store.Change {
		return store.Change{Seq: seq, Key: []byte(key), Value: []byte("v"), Index: index, RaftIndex: index}
	}
	// Group 2 took k over when group 1's history stood at 5.
	page2 := store.ChangesPage{Changes: []store.Change{put(1, "other", 1), {Seq: 2, Takeover: &store.Takeover{From: 1, Seq: 5}}, put(3, "k", 20)}, Next: 3}
	s.deliverFrom(2, page2, nil)
	if s.holds[2].Seq != 5 || s.cursor[2] != 1 {
		t.Fatalf("group 2 not held at its takeover: cursor %v, holds %v", s.cursor, s.holds)
	}
	s.deliverFrom(1, store.ChangesPage{Changes: []store.Change{put(4, "k", 10), put(5, "k", 11)}, Next: 5}, nil)
	s.deliverFrom(2, page2, nil) // read again from the cursor, as pull does
	if len(s.holds) != 0 || s.cursor[2] != 3 {
		t.Fatalf("group 1 delivered to 5: holds %v, cursor %v", s.holds, s.cursor)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "data: ") {
			var e api.WatchEvent
			json.Unmarshal([]byte(line[6:]), &e)
			order = append(order, fmt.Sprintf("%s@%d", e.Key, e.Index))
		}
	}
	if fmt.Sprint(order) != "[other@1 k@10 k@11 k@20]" {
		t.Errorf("events in the order %v, want other@1 k@10 k@11 k@20", order)
	}
	// A takeover from a group gone before the stream read it far enough.
	s.left[1] = s.cursor[1]
	delete(s.cursor, 1)
	s.deliverFrom(2, store.ChangesPage{Changes: []store.Change{{Seq: 4, Takeover: &store.Takeover{From: 1, Seq: 9}}}, Next: 4}, nil)
	if err := s.pull(context.Background()); !errors.Is(err, base.ErrCompacted) {
		t.Fatalf("a takeover from a group gone at 5, from 9: %v, want compacted", err)
	}
}

// A node serves at most MaxWatchStreams change streams; one more is
// answered 503, and a stream that ends frees its place.
func TestWatchStreamsAreBounded(t *testing.T) {
	f := newFake()
	cfg := DefaultConfig()
	cfg.MaxWatchStreams = 2
	a, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	first := openWatch(t, srv, "/v1/watch/a", nil)
	openWatch(t, srv, "/v1/watch/b", nil)
	resp, body := rawDo(t, srv, "GET", "/v1/watch/c", "")
	wantError(t, resp, body, 503, "unavailable")
	first.resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/watch/c", nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's place was not freed: %d", resp.StatusCode)
		}
		<-tick.C
	}
}
