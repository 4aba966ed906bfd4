package protocol

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
)

// Forwarding streams carry the small, frequent requests (puts, deletes,
// gets and waits) from a node to a group leader's node. Each pair of nodes
// keeps one long-lived connection on the Raft port, opened with the mux
// header for StreamGroup. Requests are written as they arrive and each
// result comes back as soon as it is ready, in any order, matched by id:
// no request waits for another. Larger requests (scans, verification,
// moving data) keep using the HTTP forwarding endpoint.
//
// A frame is
//
//	length:uint32 kind:uint8 id:uint64 body:[length-9]byte
//
// where length counts kind, id and body. A request's body is a BatchItem,
// a result's a BatchResult, both in the binary encoding of streamcodec.go;
// pings and pongs have none.
const (
	frameRequest = 1
	frameResult  = 2
	framePing    = 3
	framePong    = 4
)

// StreamGroup is the mux header's group number for forwarding streams; no
// Raft group has it.
const StreamGroup base.GroupID = 1<<32 - 1

// maxFrame bounds a frame's length. A streamed request holds one key and
// value at most; a result, one entry.
const maxFrame = 64 << 20

// The dialling side pings every pingEvery and gives the connection up when
// it has read nothing for deadAfter; the serving side closes a connection
// silent for serveIdle (a live client pings).
const (
	pingEvery  = time.Second
	deadAfter  = 5 * time.Second
	serveIdle  = 3 * deadAfter
	writeLimit = 5 * time.Second
)

// maxStreamInflight bounds the requests one connection runs at once on the
// serving side; beyond it the reader stops reading and TCP pushes back.
const maxStreamInflight = 4096

var errFrame = errors.New("bad forwarding frame")

// streamed tells whether a request travels on a forwarding stream.
func streamed(op Op) bool {
	switch op {
	case OpPut, OpDelete, OpGet, OpWait:
		return true
	}
	return false
}

func appendFrame(dst []byte, kind byte, id uint64, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(9+len(body)))
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return append(dst, body...)
}

// readFrame reads one frame. The body's buffer grows with the bytes that
// actually arrive, so a false length costs no more memory than was sent.
func readFrame(r *bufio.Reader) (kind byte, id uint64, body []byte, err error) {
	var hdr [13]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 9 || n > maxFrame {
		return 0, 0, nil, fmt.Errorf("%w: length %d", errFrame, n)
	}
	kind, id = hdr[4], binary.BigEndian.Uint64(hdr[5:13])
	if kind < frameRequest || kind > framePong {
		return 0, 0, nil, fmt.Errorf("%w: kind %d", errFrame, kind)
	}
	size := int64(n - 9)
	switch {
	case size == 0:
	case size <= 64<<10:
		body = make([]byte, size)
		_, err = io.ReadFull(r, body)
	default:
		// A large frame grows as its bytes arrive rather than trusting
		// the length for one allocation.
		var b bytes.Buffer
		_, err = io.CopyN(&b, r, size)
		body = b.Bytes()
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return kind, id, body, nil
}

// Call states: a queued call is sent by the writer or abandoned by its
// caller, never both.
const (
	callQueued int32 = iota
	callSent
	callAbandoned
)

type call struct {
	id    uint64
	body  []byte
	write bool
	state atomic.Int32
	done  chan BatchResult
}

// streams holds the forwarding connections to each peer.
type streams struct {
	layer     raft.StreamLayer
	deadAfter time.Duration
	// versions records each peer's protocol version from its greeting.
	versions *versions
	mu       sync.Mutex
	peers    map[string]*peerStream
}

type peerStream struct {
	mu   sync.Mutex // held while dialling
	conn *streamConn
	// After a failed dial, callers fail at once until downUntil rather
	// than each wait for a dial of its own.
	downUntil time.Time
	downErr   error
}

// redialAfter is how long a failed dial keeps callers from dialling again.
const redialAfter = 250 * time.Millisecond

// streamConn is one live connection to a peer.
type streamConn struct {
	addr      string
	deadAfter time.Duration
	c         net.Conn
	queue     chan *call
	mu        sync.Mutex
	pending   map[uint64]*call
	nextID    uint64
	dead      chan struct{}
	once      sync.Once
	err       error
}

func newStreams(layer raft.StreamLayer, v *versions) *streams {
	return &streams{layer: layer, deadAfter: deadAfter, versions: v, peers: map[string]*peerStream{}}
}

// close drops every connection.
func (s *streams) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		p.mu.Lock()
		if p.conn != nil {
			p.conn.kill(errors.New("node shutting down"))
		}
		p.mu.Unlock()
	}
}

// conn returns a live connection to addr, dialling one if needed.
func (s *streams) conn(ctx context.Context, addr string) (*streamConn, error) {
	s.mu.Lock()
	p := s.peers[addr]
	if p == nil {
		p = &peerStream{}
		s.peers[addr] = p
	}
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil && !p.conn.isDead() {
		return p.conn, nil
	}
	if time.Now().Before(p.downUntil) {
		return nil, p.downErr
	}
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		// The deadline has passed, though ctx may not say so yet.
		return nil, context.DeadlineExceeded
	}
	c, err := s.layer.Dial(raft.ServerAddress(addr), timeout)
	if err != nil {
		p.downUntil, p.downErr = time.Now().Add(redialAfter), err
		return nil, err
	}
	// The serving side greets first. A node of an earlier version closes
	// a connection for a group it does not know: nothing has been sent
	// yet, and its requests go over HTTP for a while.
	br := bufio.NewReaderSize(c, 64<<10)
	c.SetReadDeadline(time.Now().Add(timeout))
	kind, id, body, err := readFrame(br)
	if err == nil && kind == framePong && id == 0 {
		s.versions.note(addr, parseGreeting(body))
	}
	if err != nil || kind != framePong || id != 0 {
		c.Close()
		if err == nil {
			err = fmt.Errorf("%w: greeting of kind %d", errFrame, kind)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			err = fmt.Errorf("%w (%v)", errNoStreams, err)
			p.downUntil, p.downErr = time.Now().Add(noStreamsFor), err
			return nil, err
		}
		p.downUntil, p.downErr = time.Now().Add(redialAfter), err
		return nil, err
	}
	sc := &streamConn{addr: addr, deadAfter: s.deadAfter, c: c, queue: make(chan *call, 1024), pending: map[uint64]*call{}, dead: make(chan struct{})}
	go sc.writeLoop()
	go sc.readLoop(br)
	p.conn = sc
	return sc, nil
}

// errNoStreams: the peer closed the connection without a greeting, as a
// node of an earlier version does; requests to it go over HTTP instead.
var errNoStreams = errors.New("peer does not serve forwarding streams")

// noStreamsFor is how long a peer without streams is served over HTTP
// before streams are tried again (it may have been upgraded).
const noStreamsFor = 30 * time.Second

func (sc *streamConn) isDead() bool {
	select {
	case <-sc.dead:
		return true
	default:
		return false
	}
}

// kill closes the connection and fails every call on it: a write that may
// have been sent has an unknown outcome, anything else did not happen.
func (sc *streamConn) kill(err error) {
	sc.once.Do(func() {
		sc.mu.Lock()
		sc.err = err
		calls := sc.pending
		sc.pending = map[uint64]*call{}
		close(sc.dead)
		sc.mu.Unlock()
		sc.c.Close()
		for _, cl := range calls {
			cl.done <- lostResult(cl, sc.addr, err)
		}
	})
}

func lostResult(cl *call, addr string, err error) BatchResult {
	var e error
	switch {
	case cl.state.CompareAndSwap(callQueued, callAbandoned):
		e = fmt.Errorf("%w: forwarding to %s: %v (not sent)", base.ErrNoLeader, addr, err)
	case cl.write:
		e = fmt.Errorf("%w: forwarded to %s: %v", base.ErrOutcomeUnknown, addr, err)
	default:
		e = fmt.Errorf("%w: forwarded to %s: %v", base.ErrNoLeader, addr, err)
	}
	w := base.ToWire(e)
	return BatchResult{Error: &w}
}

// forward sends req on the stream to addr and waits for its result.
func (s *streams) forward(ctx context.Context, addr string, req Request) (Response, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	sc, err := s.conn(ctx, addr)
	if err != nil {
		return Response{}, fmt.Errorf("%w: forwarding to %s: %w", base.ErrNoLeader, addr, err)
	}
	// Leave the peer a margin to answer before the caller gives up.
	ms := max(time.Until(dl).Milliseconds()-50, 1)
	cl := &call{body: encodeStreamRequest(BatchItem{Request: req, DeadlineMS: ms}), write: req.IsWrite(), done: make(chan BatchResult, 1)}
	sc.mu.Lock()
	if sc.err != nil {
		sc.mu.Unlock()
		return Response{}, fmt.Errorf("%w: forwarding to %s: %v", base.ErrNoLeader, addr, sc.err)
	}
	sc.nextID++
	cl.id = sc.nextID
	sc.pending[cl.id] = cl
	sc.mu.Unlock()
	select {
	case sc.queue <- cl:
	case <-sc.dead: // kill answers the call
	case <-ctx.Done():
		return Response{}, sc.abandon(cl)
	}
	select {
	case r := <-cl.done:
		if r.Error != nil {
			return Response{}, base.FromWire(*r.Error)
		}
		return *r.Response, nil
	case <-ctx.Done():
		return Response{}, sc.abandon(cl)
	}
}

// abandon gives a call up when its caller's deadline passes.
func (sc *streamConn) abandon(cl *call) error {
	sc.mu.Lock()
	delete(sc.pending, cl.id)
	sc.mu.Unlock()
	if cl.state.CompareAndSwap(callQueued, callAbandoned) {
		return fmt.Errorf("%w: forwarding to %s: no room to send in time", base.ErrUnavailable, sc.addr)
	}
	if cl.write {
		return fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrOutcomeUnknown, sc.addr)
	}
	return fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrUnavailable, sc.addr)
}

// nextQueued returns the next item of q, or the zero value when q stays
// empty after the other runnable goroutines have had a turn. Requests and
// results come in bursts (the results of one Raft entry are released
// together), and that one yield lets a burst leave in one write instead of
// one write per item.
func nextQueued[T any](q chan T) T {
	for yielded := false; ; yielded = true {
		select {
		case v := <-q:
			return v
		default:
		}
		if yielded {
			var zero T
			return zero
		}
		runtime.Gosched()
	}
}

// deadline keeps a connection's read or write deadline limit ahead of
// now, moving it at most once per limit/16: a busy connection skips most
// of the timer updates, and the deadline is never less than 15/16 of
// limit away when a read or write starts.
type deadline struct {
	set   func(time.Time) error
	limit time.Duration
	last  time.Time
}

func (d *deadline) extend() {
	now := time.Now()
	if now.Sub(d.last) < d.limit/16 {
		return
	}
	d.last = now
	d.set(now.Add(d.limit))
}

// writeLoop writes queued calls, flushing whenever the queue runs dry,
// and pings while the connection is idle.
func (sc *streamConn) writeLoop() {
	bw := bufio.NewWriterSize(sc.c, 64<<10)
	wdl := deadline{set: sc.c.SetWriteDeadline, limit: writeLimit}
	tick := time.NewTicker(min(pingEvery, sc.deadAfter/3))
	defer tick.Stop()
	var buf []byte
	write := func(kind byte, id uint64, body []byte) error {
		buf = appendFrame(buf[:0], kind, id, body)
		_, err := bw.Write(buf)
		return err
	}
	for {
		var err error
		select {
		case cl := <-sc.queue:
			for cl != nil && err == nil {
				if cl.state.CompareAndSwap(callQueued, callSent) {
					err = write(frameRequest, cl.id, cl.body)
				}
				cl = nextQueued(sc.queue)
			}
		case <-tick.C:
			err = write(framePing, 0, nil)
		case <-sc.dead:
			return
		}
		if err == nil {
			wdl.extend()
			err = bw.Flush()
		}
		if err != nil {
			sc.kill(err)
			return
		}
	}
}

// readLoop hands each result to its caller; silence beyond deadAfter
// means the peer or the path to it is gone.
func (sc *streamConn) readLoop(br *bufio.Reader) {
	rdl := deadline{set: sc.c.SetReadDeadline, limit: sc.deadAfter}
	for {
		rdl.extend()
		kind, id, body, err := readFrame(br)
		if err != nil {
			sc.kill(err)
			return
		}
		switch kind {
		case framePong:
			continue
		case frameResult:
		default:
			sc.kill(fmt.Errorf("%w: kind %d from the serving side", errFrame, kind))
			return
		}
		r, err := decodeStreamResult(body)
		if err != nil {
			sc.kill(err)
			return
		}
		sc.mu.Lock()
		cl := sc.pending[id]
		delete(sc.pending, id)
		sc.mu.Unlock()
		if cl != nil {
			cl.done <- r
		}
	}
}
