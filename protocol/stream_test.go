package protocol

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/transport"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakePeer is the serving end of forwarding streams, answered by hand.
type fakePeer struct {
	addr  string
	mux   *transport.Mux
	conns chan net.Conn
}

// streamPair starts a fake peer and a client that forwards to it.
func streamPair(t *testing.T) (*fakePeer, *streams, *transport.Mux) {
	t.Helper()
	pm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pm.Layer(StreamGroup)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{addr: pm.Addr().String(), mux: pm, conns: make(chan net.Conn, 8)}
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			c.Write(appendFrame(nil, framePong, 0, nil)) // the greeting
			p.conns <- c
		}
	}()
	cm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cm.Layer(StreamGroup)
	if err != nil {
		t.Fatal(err)
	}
	s := newStreams(cl, &versions{})
	t.Cleanup(func() { s.close(); cm.Close(); pm.Close() })
	return p, s, cm
}

func (p *fakePeer) accept(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	select {
	case c := <-p.conns:
		return c, bufio.NewReader(c)
	case <-time.After(10 * time.Second):
		t.Fatal("no forwarding stream arrived")
		return nil, nil
	}
}

// nextRequest reads frames until a request, skipping pings.
func nextRequest(t *testing.T, br *bufio.Reader) (uint64, BatchItem) {
	t.Helper()
	for {
		kind, id, body, err := readFrame(br)
		if err != nil {
			t.Fatalf("reading a request frame: %v", err)
		}
		if kind == framePing {
			continue
		}
		if kind != frameRequest {
			t.Fatalf("frame kind %d from the client", kind)
		}
		it, err := DecodeStreamRequest(body)
		if err != nil {
			t.Fatalf("request frame: %v", err)
		}
		return id, it
	}
}

func answer(t *testing.T, c net.Conn, id uint64, r BatchResult) {
	t.Helper()
	if _, err := c.Write(appendFrame(nil, frameResult, id, encodeStreamResult(r))); err != nil {
		t.Fatal(err)
	}
}

type outcomeOf struct {
	resp Response
	err  error
}

func goForward(ctx context.Context, s *streams, addr string, req Request) chan outcomeOf {
	ch := make(chan outcomeOf, 1)
	go func() {
		r, err := s.forward(ctx, addr, req)
		ch <- outcomeOf{r, err}
	}()
	return ch
}

func wait(t *testing.T, ch chan outcomeOf) outcomeOf {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("forward did not return")
		return outcomeOf{}
	}
}

func getReq(key string) Request {
	return Request{Op: OpGet, Group: 1, Key: []byte(key)}
}
func putReq(key string) Request {
	return Request{Op: OpPut, Group: 1, Key: []byte(key), Value: []byte("v")}
}

func TestStreamMatchesResultsOutOfOrder(t *testing.T) {
	p, s, _ := streamPair(t)
	ctx := context.Background()
	a := goForward(ctx, s, p.addr, getReq("a"))
	c, br := p.accept(t)
	id1, it1 := nextRequest(t, br)
	b := goForward(ctx, s, p.addr, getReq("b"))
	id2, it2 := nextRequest(t, br)
	if id1 == id2 {
		t.Fatalf("two requests share id %d", id1)
	}
	if it1.DeadlineMS <= 0 || it2.DeadlineMS <= 0 {
		t.Fatalf("deadlines %d, %d", it1.DeadlineMS, it2.DeadlineMS)
	}
	// Answer the second first; each caller must get its own result.
	for _, x := range []struct {
		id uint64
		it BatchItem
	}{{id2, it2}, {id1, it1}} {
		answer(t, c, x.id, BatchResult{Response: &Response{Entry: &KV{Key: x.it.Key, Value: append([]byte("value of "), x.it.Key...)}, ServedBy: "peer"}})
	}
	for key, ch := range map[string]chan outcomeOf{"a": a, "b": b} {
		o := wait(t, ch)
		if o.err != nil {
			t.Fatalf("get %s: %v", key, o.err)
		}
		if o.resp.Entry == nil || string(o.resp.Entry.Value) != "value of "+key || o.resp.ServedBy != "peer" {
			t.Fatalf("get %s got %+v", key, o.resp.Entry)
		}
	}
	// An error result comes back as the same error.
	e := goForward(ctx, s, p.addr, putReq("c"))
	id, _ := nextRequest(t, br)
	w := base.ToWire(&base.NotLeaderError{Group: 1, Leader: "n3"})
	answer(t, c, id, BatchResult{Error: &w})
	o := wait(t, e)
	var nl *base.NotLeaderError
	if !errors.As(o.err, &nl) || nl.Leader != "n3" {
		t.Fatalf("want not-leader naming n3, got %v", o.err)
	}
}

func TestStreamLostConnection(t *testing.T) {
	p, s, _ := streamPair(t)
	ctx := context.Background()
	// A write that reached the peer before the connection broke may or
	// may not have happened.
	w := goForward(ctx, s, p.addr, putReq("k"))
	c, br := p.accept(t)
	nextRequest(t, br)
	c.Close()
	if o := wait(t, w); !errors.Is(o.err, base.ErrOutcomeUnknown) {
		t.Fatalf("write on a broken stream: want outcome unknown, got %v", o.err)
	}
	// A read on a broken stream is simply retryable; the client dials a
	// new connection for it.
	r := goForward(ctx, s, p.addr, getReq("k"))
	c, br = p.accept(t)
	nextRequest(t, br)
	c.Close()
	o := wait(t, r)
	if !errors.Is(o.err, base.ErrNoLeader) || errors.Is(o.err, base.ErrOutcomeUnknown) {
		t.Fatalf("read on a broken stream: want no leader (retry), got %v", o.err)
	}
	// A peer that refuses the connection received nothing.
	p.mux.Close()
	_, err := s.forward(ctx, p.addr, putReq("k"))
	if !errors.Is(err, base.ErrNoLeader) || errors.Is(err, base.ErrOutcomeUnknown) {
		t.Fatalf("write to a closed port: want no leader, got %v", err)
	}
}

func TestStreamCallerDeadline(t *testing.T) {
	p, s, _ := streamPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	w := goForward(ctx, s, p.addr, putReq("slow"))
	c, br := p.accept(t)
	id, it := nextRequest(t, br)
	if it.DeadlineMS > 300 {
		t.Fatalf("forwarded deadline %d ms exceeds the caller's 300 ms", it.DeadlineMS)
	}
	if o := wait(t, w); !errors.Is(o.err, base.ErrOutcomeUnknown) {
		t.Fatalf("unanswered write: want outcome unknown, got %v", o.err)
	}
	// The late answer is dropped; the connection goes on serving.
	answer(t, c, id, BatchResult{Response: &Response{ServedBy: "peer"}})
	g := goForward(context.Background(), s, p.addr, getReq("next"))
	id, _ = nextRequest(t, br)
	answer(t, c, id, BatchResult{Response: &Response{Entry: &KV{Key: []byte("next"), Value: []byte("ok")}}})
	if o := wait(t, g); o.err != nil || string(o.resp.Entry.Value) != "ok" {
		t.Fatalf("after a late answer: %+v %v", o.resp, o.err)
	}
	select {
	case <-p.conns:
		t.Fatal("a late answer made the client dial again")
	default:
	}
	// An unanswered read is unavailable, not unknown.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	r := goForward(ctx2, s, p.addr, getReq("slow"))
	nextRequest(t, br)
	if o := wait(t, r); !errors.Is(o.err, base.ErrUnavailable) {
		t.Fatalf("unanswered read: want unavailable, got %v", o.err)
	}
}

// lateContext has a deadline in the past but has not noticed yet, as a
// context does in the moment before its timer fires.
type lateContext struct{ context.Context }

func (lateContext) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestStreamDeadlinePassedBeforeDial(t *testing.T) {
	p, s, _ := streamPair(t)
	_, err := s.forward(lateContext{context.Background()}, p.addr, putReq("k"))
	if !errors.Is(err, base.ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a refusal for the passed deadline, got %v", err)
	}
}

func TestStreamSilentPeerIsDropped(t *testing.T) {
	p, s, _ := streamPair(t)
	s.deadAfter = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The peer takes the write and then says nothing, not even to pings:
	// the client gives the connection up long before the caller's deadline.
	w := goForward(ctx, s, p.addr, putReq("k"))
	_, br := p.accept(t)
	nextRequest(t, br)
	o := wait(t, w)
	if !errors.Is(o.err, base.ErrOutcomeUnknown) {
		t.Fatalf("write to a silent peer: want outcome unknown, got %v", o.err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call ended by its own deadline, not by the silence rule")
	}
	// The next request gets a new connection.
	g := goForward(context.Background(), s, p.addr, getReq("k"))
	c, br := p.accept(t)
	id, _ := nextRequest(t, br)
	answer(t, c, id, BatchResult{Response: &Response{ServedBy: "peer"}})
	if o := wait(t, g); o.err != nil {
		t.Fatalf("after redial: %v", o.err)
	}
}

func TestStreamFaultHookCutsForwarding(t *testing.T) {
	p, s, cm := streamPair(t)
	w := goForward(context.Background(), s, p.addr, putReq("k"))
	_, br := p.accept(t)
	nextRequest(t, br)
	cm.Block([]string{p.addr})
	if o := wait(t, w); !errors.Is(o.err, base.ErrOutcomeUnknown) {
		t.Fatalf("write in flight when cut off: want outcome unknown, got %v", o.err)
	}
	_, err := s.forward(context.Background(), p.addr, putReq("k"))
	if !errors.Is(err, base.ErrNoLeader) || errors.Is(err, base.ErrOutcomeUnknown) {
		t.Fatalf("write to a cut-off peer: want no leader, got %v", err)
	}
	cm.Block(nil)
	// Healed, the peer is reachable again once the failed dial's short
	// backoff has passed; until then requests are refused as retryable.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		g := goForward(context.Background(), s, p.addr, getReq("k"))
		select {
		case c := <-p.conns:
			br := bufio.NewReader(c)
			id, _ := nextRequest(t, br)
			answer(t, c, id, BatchResult{Response: &Response{ServedBy: "peer"}})
			if o := wait(t, g); o.err != nil {
				t.Fatalf("after healing: %v", o.err)
			}
			return
		case o := <-g:
			if !errors.Is(o.err, base.ErrNoLeader) {
				t.Fatalf("after healing, before a new connection: %v", o.err)
			}
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatal("no connection after healing")
			}
		case <-deadline:
			t.Fatal("no connection after healing")
		}
	}
}

// A peer of an earlier version closes a stream connection at once, having
// no such group: requests to it go over HTTP, and nothing was sent on the
// stream.
func TestStreamFallsBackToHTTPForPeersWithoutStreams(t *testing.T) {
	old, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var calls atomic.Int32
	// The peer serves node-to-node HTTP on its Raft port, not streams.
	pl, err := old.Layer(transport.PeerHTTPGroup)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b, err := DecodeBatch(body)
		if r.URL.Path != ForwardPath || err != nil {
			http.Error(w, "bad forward", http.StatusBadRequest)
			return
		}
		calls.Add(1)
		reply := BatchReply{}
		for _, it := range b.Requests {
			reply.Results = append(reply.Results, BatchResult{Response: &Response{ServedBy: "old", Entry: &KV{Key: it.Key, Value: []byte("over http")}}})
		}
		w.Write(mustJSON(reply))
	})}
	go srv.Serve(pl)
	defer srv.Close()
	cm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	cl, _ := cm.Layer(StreamGroup)
	f := NewForwarder()
	f.UseStreams(cl)
	cpl, _ := cm.Layer(transport.PeerHTTPGroup)
	f.UsePeerLayer(cpl)
	defer f.Close()
	// The client port is never called for node-to-node requests.
	info := layout.NodeInfo{ID: "old", HTTPAddr: "127.0.0.1:1", RaftAddr: old.Addr().String()}
	for i := 0; i < 3; i++ {
		resp, err := f.To(context.Background(), info, getReq("k"))
		if err != nil || resp.ServedBy != "old" || string(resp.Entry.Value) != "over http" {
			t.Fatalf("request %d to a peer without streams: %+v %v", i, resp, err)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d forwarding calls over HTTP, want 3", n)
	}
	// It said no protocol version: it is of a release before versioning.
	if v, ok := f.PeerVersion(info.RaftAddr); !ok || v != Unversioned {
		t.Fatalf("the old peer's protocol version: %d %v, want %d", v, ok, Unversioned)
	}
}

// slowRefusal is a layer whose dials fail after a while, as to a host
// that drops connection attempts.
type slowRefusal struct {
	raft.StreamLayer
	dials atomic.Int32
}

func (l *slowRefusal) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	l.dials.Add(1)
	<-time.After(200 * time.Millisecond) // the dial's own timeout running out
	return nil, errors.New("i/o timeout")
}

// Callers queued behind a failed dial fail with it rather than dial again
// one after another, each waiting out its own timeout.
func TestStreamFailedDialIsShared(t *testing.T) {
	l := &slowRefusal{}
	s := newStreams(l, &versions{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.forward(context.Background(), "10.0.0.1:7071", putReq("k"))
			if !errors.Is(err, base.ErrNoLeader) || errors.Is(err, base.ErrOutcomeUnknown) {
				t.Errorf("want no leader, got %v", err)
			}
		}()
	}
	wg.Wait()
	if n := l.dials.Load(); n != 1 {
		t.Fatalf("8 callers dialled %d times", n)
	}
}

func TestStreamServe(t *testing.T) {
	sm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	sl, _ := sm.Layer(StreamGroup)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A store of one map, answering as a node does: the request is
	// validated, then served.
	var mu sync.Mutex
	kv := map[string][]byte{}
	serve := func(_ context.Context, req Request) (Response, error) {
		if err := req.Validate(); err != nil {
			return Response{}, err
		}
		mu.Lock()
		defer mu.Unlock()
		switch req.Op {
		case OpPut:
			kv[string(req.Key)] = req.Value
			return Response{ServedBy: "n1", Write: &WriteResult{Key: req.Key, Index: 1, Group: req.Group, RaftIndex: 1}}, nil
		case OpGet:
			return Response{ServedBy: "n1", Entry: &KV{Key: req.Key, Value: kv[string(req.Key)], Group: req.Group}}, nil
		}
		return Response{}, fmt.Errorf("%w: %s", base.ErrBadRequest, req.Op)
	}
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				return
			}
			go ServeStream(ctx, c, "n1", Version, serve)
		}
	}()
	cm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	l, _ := cm.Layer(StreamGroup)
	c, err := l.Dial(raft.ServerAddress(sm.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if kind, id, body, err := readFrame(br); err != nil || kind != framePong || id != 0 || parseGreeting(body) != Version {
		t.Fatalf("no greeting of this version: kind %d id %d body %x %v", kind, id, body, err)
	}
	send := func(kind byte, id uint64, body []byte) {
		t.Helper()
		if _, err := c.Write(appendFrame(nil, kind, id, body)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() (byte, uint64, BatchResult) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		kind, id, body, err := readFrame(br)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		var r BatchResult
		if kind == frameResult {
			if r, err = decodeStreamResult(body); err != nil {
				t.Fatal(err)
			}
		}
		return kind, id, r
	}
	item := func(req Request) []byte {
		return encodeStreamRequest(BatchItem{Request: req, DeadlineMS: 5000})
	}
	// Bad requests get an error result each; the stream stays open.
	for i, body := range [][]byte{
		[]byte("{not a request"),
		item(Request{Op: OpScan, Group: 1}),
		item(Request{Op: OpPut, Group: 1}),
		encodeStreamRequest(BatchItem{Request: putReq("k"), DeadlineMS: 0}),
	} {
		send(frameRequest, uint64(100+i), body)
		kind, id, r := recv()
		if kind != frameResult || id != uint64(100+i) || r.Error == nil || r.Error.Code != base.CodeBadRequest {
			t.Fatalf("bad request %d (%s): kind %d id %d result %+v", i, body, kind, id, r)
		}
	}
	send(framePing, 7, nil)
	if kind, id, _ := recv(); kind != framePong || id != 7 {
		t.Fatalf("ping 7 answered with kind %d id %d", kind, id)
	}
	send(frameRequest, 1, item(Request{Op: OpPut, Group: 1, Key: []byte("k"), Value: []byte("hello")}))
	if _, id, r := recv(); id != 1 || r.Error != nil || r.Response.Write == nil || r.Response.Write.Index == 0 {
		t.Fatalf("put: id %d %+v %+v", id, r.Response, r.Error)
	}
	send(frameRequest, 2, item(Request{Op: OpGet, Group: 1, Key: []byte("k")}))
	if _, id, r := recv(); id != 2 || r.Error != nil || r.Response.Entry == nil || string(r.Response.Entry.Value) != "hello" || r.Response.ServedBy != "n1" {
		t.Fatalf("get: id %d %+v %+v", id, r.Response, r.Error)
	}
	// A frame longer than the limit ends the stream.
	var hdr [13]byte
	hdr[0], hdr[1], hdr[2], hdr[3] = 0xff, 0xff, 0xff, 0xff
	c.Write(hdr[:])
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, _, err := readFrame(br); !errors.Is(err, io.EOF) {
		t.Fatalf("after an oversized frame: want the stream closed, got %v", err)
	}
}

func TestReadFrameRejectsBadFraming(t *testing.T) {
	good := appendFrame(nil, frameRequest, 42, []byte(`some body`))
	kind, id, body, err := readFrame(bufio.NewReader(bytes.NewReader(good)))
	if err != nil || kind != frameRequest || id != 42 || string(body) != `some body` {
		t.Fatalf("round trip: %d %d %q %v", kind, id, body, err)
	}
	for name, b := range map[string][]byte{
		"short length": {0, 0, 0, 8, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"huge length":  {0x7f, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"kind 0":       appendFrame(nil, 0, 1, nil),
		"kind 9":       appendFrame(nil, 9, 1, nil),
		"cut body":     good[:len(good)-1],
		"cut header":   good[:5],
	} {
		if _, _, _, err := readFrame(bufio.NewReader(bytes.NewReader(b))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzStreamFrame feeds arbitrary bytes to the decoding of frames and of
// their bodies: nothing may panic, and whatever decodes encodes back to the
// same value.
func FuzzStreamFrame(f *testing.F) {
	f.Add(appendFrame(nil, frameRequest, 1, encodeStreamRequest(BatchItem{Request: putReq("k"), DeadlineMS: 10})))
	f.Add(appendFrame(nil, frameRequest, 2, encodeStreamRequest(BatchItem{Request: Request{Op: OpWait, Group: 3, Index: 9, Term: 2}, DeadlineMS: 10})))
	f.Add(appendFrame(nil, frameRequest, 3, encodeStreamRequest(BatchItem{Request: Request{Op: OpGet, Group: 2, Key: []byte("x"), Consistency: Lease, Index: 4}, DeadlineMS: 10})))
	f.Add(appendFrame(nil, frameResult, 4, encodeStreamResult(sampleResults[0])))
	f.Add(appendFrame(nil, frameResult, 5, encodeStreamResult(sampleResults[2])))
	f.Add(appendFrame(nil, framePing, 6, nil))
	f.Add([]byte{0, 0, 0, 9, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for {
			kind, id, body, err := readFrame(br)
			if err != nil {
				return
			}
			_, _, rb, err := readFrame(bufio.NewReader(bytes.NewReader(appendFrame(nil, kind, id, body))))
			if err != nil || !bytes.Equal(rb, body) {
				t.Fatalf("frame round trip: %v", err)
			}
			switch kind {
			case frameRequest:
				it, err := DecodeStreamRequest(body)
				if err != nil {
					if !errors.Is(err, base.ErrBadRequest) {
						t.Fatalf("decode error outside bad_request: %v", err)
					}
					continue
				}
				again, err := DecodeStreamRequest(encodeStreamRequest(it))
				if err != nil || !reflect.DeepEqual(again, it) {
					t.Fatalf("request round trip: %+v became %+v (%v)", it, again, err)
				}
			case frameResult:
				r, err := decodeStreamResult(body)
				if err != nil {
					continue
				}
				again, err := decodeStreamResult(encodeStreamResult(r))
				if err != nil || !reflect.DeepEqual(again, r) {
					t.Fatalf("result round trip: %+v became %+v (%v)", r, again, err)
				}
			}
		}
	})
}

var sampleResults = []BatchResult{
	{Response: &Response{ServedBy: "n1", Write: &WriteResult{Key: []byte("k"), Index: 7, Group: 2, RaftIndex: 7}}},
	{Response: &Response{ServedBy: "n2", Write: &WriteResult{Key: []byte("k"), Index: 9, Group: 3, RaftIndex: 8, Async: true, RaftTerm: 4}}},
	{Response: &Response{ServedBy: "n3", RaftIndex: 12, Entry: &KV{Key: []byte("k"), Value: []byte("v"), CreateIndex: 3, ModifyIndex: 12, Group: 1}}},
	{Response: &Response{ServedBy: "n3", RaftIndex: 12}},
	{Error: &base.WireError{Error: "group 2: not the leader", Code: base.CodeNotLeader, Group: 2, Leader: "n1"}},
	{Error: &base.WireError{Error: "compare-and-swap failed", Code: "cas_failed", Index: 41}},
}

func TestStreamCodecRoundTrips(t *testing.T) {
	for _, it := range []BatchItem{
		{Request: Request{Op: OpPut, Group: 1, Key: []byte("k"), Value: []byte("v"), HasCAS: true, CAS: 5}, DeadlineMS: 1},
		{Request: Request{Op: OpPut, Group: 1, Key: []byte("k"), Value: []byte("v"), Async: true}, DeadlineMS: 99},
		{Request: Request{Op: OpDelete, Group: 7, Key: []byte("\x00/%2F")}, DeadlineMS: 10000},
		{Request: Request{Op: OpGet, Group: layout.MaxGroupID, Key: []byte("k"), Consistency: Linearizable, Index: 1 << 40}, DeadlineMS: 5},
		{Request: Request{Op: OpWait, Group: 3, Index: 77, Term: 9}, DeadlineMS: 5},
	} {
		got, err := DecodeStreamRequest(encodeStreamRequest(it))
		if err != nil || !reflect.DeepEqual(got, it) {
			t.Errorf("request %+v came back as %+v (%v)", it, got, err)
		}
	}
	for _, r := range sampleResults {
		got, err := decodeStreamResult(encodeStreamResult(r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("result %+v came back as %+v (%v)", r, got, err)
		}
	}
	// Every cut of a valid body is refused, as is anything after it.
	body := encodeStreamRequest(BatchItem{Request: putReq("key"), DeadlineMS: 9})
	for i := range body {
		if _, err := DecodeStreamRequest(body[:i]); !errors.Is(err, base.ErrBadRequest) {
			t.Errorf("request cut at %d of %d: %v", i, len(body), err)
		}
	}
	if _, err := DecodeStreamRequest(append(body, 0)); err == nil {
		t.Error("a request with a trailing byte was accepted")
	}
	res := encodeStreamResult(sampleResults[2])
	for i := range res {
		if _, err := decodeStreamResult(res[:i]); err == nil {
			t.Errorf("result cut at %d of %d accepted", i, len(res))
		}
	}
}

// The codec carries every Request field a streamed op uses. A field added
// to Request must be listed here, as carried (and encoded) or not.
func TestStreamCodecCoversRequestFields(t *testing.T) {
	carried := map[string]bool{"Op": true, "Group": true, "Key": true, "Value": true, "HasCAS": true, "CAS": true,
		"Consistency": true, "Index": true, "Term": true, "Async": true}
	notUsedByStreamedOps := map[string]bool{"Prefix": true, "After": true, "Limit": true, "KeysOnly": true, "Node": true,
		"Level": true, "Indexes": true, "Deep": true, "Ranges": true, "Above": true, "Entries": true, "Change": true,
		"Target": true, "Move": true, "Abort": true, "LayoutIndex": true, "Force": true,
		"Restore": true, "RestoreStep": true, "MaxBytes": true, "Routing": true, "ACL": true,
		"Floor": true, "WaitMS": true, "FromNow": true}
	rt := reflect.TypeOf(Request{})
	for i := 0; i < rt.NumField(); i++ {
		name := rt.Field(i).Name
		if !carried[name] && !notUsedByStreamedOps[name] {
			t.Errorf("Request.%s: decide whether streamed ops use it (and encode it if so)", name)
		}
	}
}
