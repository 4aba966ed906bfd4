package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves the API over HTTP/1.1.
//
// Most of a node's traffic is small keep-alive requests on /v1/kv/, and on
// a CPU-bound node Go's net/http costs about 20 µs per request beyond the
// read and the write it needs: a background read and its goroutine per
// request, header parsing into maps, a buffered writer per response. So each
// connection starts on a lean loop that reads a plain request, calls the
// same handler and answers in one write. The first request outside that
// loop's subset (another path, a chunked body, Expect, HTTP/1.0, a header it
// does not parse) hands the connection, with the bytes already read, to
// net/http for good: every request gets net/http's answer or an identical
// one.
type Server struct {
	std     *http.Server // the fallback, with the same handler and timeouts
	handoff *connQueue

	mu     sync.Mutex
	ln     net.Listener
	conns  map[*leanConn]bool // true while idle between requests
	closed bool
	wg     sync.WaitGroup

	leanServed atomic.Uint64 // requests answered by the lean loop
}

// NewServer serves h on HTTP/1.1 with read-header, read, write and idle
// timeouts.
func NewServer(addr string, h http.Handler) *Server {
	return &Server{
		std: &http.Server{
			Addr:              addr,
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
		},
		handoff: newConnQueue(),
		conns:   map[*leanConn]bool{},
	}
}

// Serve accepts connections on ln until Shutdown or Close, then returns
// http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.handoff.addr = ln.Addr()
	s.mu.Unlock()
	go s.std.Serve(s.handoff) //nolint:errcheck // ends with Shutdown or Close
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return http.ErrServerClosed
			}
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		lc := &leanConn{s: s, c: c, remote: c.RemoteAddr().String()}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		s.conns[lc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go lc.serve()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// stop closes the listener and the idle connections (all of them when all
// is set) and reports the connections still serving a request.
func (s *Server) stop(all bool) {
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	for lc, idle := range s.conns {
		if idle || all {
			lc.c.Close()
		}
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// Shutdown stops accepting, closes idle connections and waits for the
// requests in progress to finish, or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop(false)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	err := s.std.Shutdown(ctx)
	select {
	case <-done:
		return err
	case <-ctx.Done():
		s.stop(true)
		return ctx.Err()
	}
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stop(true)
	return s.std.Close()
}

// idle marks lc idle (between requests) or busy; false once the server is
// closing, and lc should close.
func (s *Server) idle(lc *leanConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[lc] = idle
	return true
}

func (s *Server) forget(lc *leanConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
	s.wg.Done()
}

// leanConn is one connection on the lean loop.
type leanConn struct {
	s      *Server
	c      net.Conn
	remote string
	br     *bufio.Reader
	out    []byte // the response being written, reused
}

func (lc *leanConn) serve() {
	defer lc.s.forget(lc)
	std := lc.s.std
	lc.br = bufio.NewReaderSize(lc.c, 4096)
	wait := headerTimeout(std) // the first request is due at once
	for {
		lc.c.SetReadDeadline(deadline(time.Now(), wait))
		if _, err := lc.br.Peek(1); err != nil || !lc.s.idle(lc, false) {
			lc.c.Close()
			return
		}
		start := time.Now()
		lc.c.SetReadDeadline(deadline(start, headerTimeout(std)))
		raw, err := readHead(lc.br, std.MaxHeaderBytes+4096)
		if err != nil && !errors.Is(err, errHeadTooLarge) {
			lc.c.Close() // timed out or gone mid-request
			return
		}
		var req *http.Request
		if err == nil {
			req = parseLean(raw)
		}
		if req == nil {
			lc.handOff(raw)
			return
		}
		lc.c.SetReadDeadline(deadline(start, std.ReadTimeout))
		lc.c.SetWriteDeadline(deadline(start, std.WriteTimeout))
		req.RemoteAddr = lc.remote
		keep := lc.respond(req)
		if !keep || !lc.s.idle(lc, true) {
			lc.c.Close()
			return
		}
		wait = std.IdleTimeout
		if wait <= 0 {
			wait = std.ReadTimeout
		}
	}
}

// headerTimeout is how long a request's line and headers may take, as
// net/http reads its settings.
func headerTimeout(std *http.Server) time.Duration {
	if std.ReadHeaderTimeout > 0 && (std.ReadTimeout <= 0 || std.ReadHeaderTimeout < std.ReadTimeout) {
		return std.ReadHeaderTimeout
	}
	return std.ReadTimeout
}

// deadline is from+d, or no deadline when d is not positive.
func deadline(from time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return from.Add(d)
}

// respond runs the handler on req and writes its answer; false when the
// connection must close after it.
func (lc *leanConn) respond(req *http.Request) (keep bool) {
	var body *leanBody
	if req.ContentLength > 0 {
		body = &leanBody{r: lc.br, n: req.ContentLength}
		req.Body = body
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req = req.WithContext(ctx)
	w := &leanResponse{h: make(http.Header, 8), req: req}
	if !lc.run(w, req) {
		return false
	}
	lc.s.leanServed.Add(1)
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	keep = !req.Close && !strings.EqualFold(w.sent.Get("Connection"), "close")
	if body != nil && body.n > 0 {
		// Left unread: refused as too large, most likely. net/http closes
		// the connection then, rather than read the rest.
		keep = false
	}
	lc.out = w.encode(lc.out[:0], keep)
	if _, err := lc.c.Write(lc.out); err != nil {
		return false
	}
	if cap(lc.out) > 64<<10 {
		lc.out = nil // do not hold a large answer's buffer
	}
	return keep
}

// run calls the handler, recovering a panic as net/http does: logged, and
// the connection closed.
func (lc *leanConn) run(w *leanResponse, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				logf := log.Printf
				if l := lc.s.std.ErrorLog; l != nil {
					logf = l.Printf
				}
				logf("http: panic serving %v: %v\n%s", lc.remote, p, buf)
			}
		}
	}()
	lc.s.std.Handler.ServeHTTP(w, req)
	return true
}

// handOff gives the connection to net/http, which reads raw and whatever
// is buffered before the socket.
func (lc *leanConn) handOff(raw []byte) {
	pre := slices.Clip(raw)
	if n := lc.br.Buffered(); n > 0 {
		b, _ := lc.br.Peek(n)
		pre = append(pre, b...)
	}
	lc.c.SetDeadline(time.Time{})
	if !lc.s.handoff.push(&prefixConn{Conn: lc.c, pre: pre}) {
		lc.c.Close()
	}
}

// errHeadTooLarge: the request line and headers exceed the limit.
var errHeadTooLarge = errors.New("request head too large")

// readHead reads a request's line and headers up to the blank line that
// ends them, at most limit bytes (a head that starts with an empty line is
// that line alone). On errHeadTooLarge it returns what it read.
func readHead(br *bufio.Reader, limit int) ([]byte, error) {
	var raw []byte
	lineStart := 0
	for {
		chunk, err := br.ReadSlice('\n')
		raw = append(raw, chunk...)
		if len(raw) > limit {
			return raw, errHeadTooLarge
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return raw, err
		}
		line := raw[lineStart:]
		if string(line) == "\r\n" || string(line) == "\n" {
			return raw, nil
		}
		lineStart = len(raw)
	}
}

// parseLean returns the request in raw when it is in the lean loop's
// subset, nil otherwise (net/http then answers it, including with its
// errors). The subset: HTTP/1.1 GET, PUT or DELETE on /v1/kv/ without
// recurse, CRLF line ends, one Host, a body only on PUT and framed by one
// Content-Length, no Transfer-Encoding, Expect or Upgrade, and a
// Connection header of keep-alive or close at most.
func parseLean(raw []byte) *http.Request {
	lines := bytes.Split(raw, []byte("\r\n"))
	// raw ends with CRLF CRLF: the split ends with two empty strings.
	if len(lines) < 3 || len(lines[len(lines)-1]) != 0 || len(lines[len(lines)-2]) != 0 {
		return nil
	}
	lines = lines[:len(lines)-2]
	method, rest, ok1 := strings.Cut(string(lines[0]), " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" {
		return nil
	}
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
	default:
		return nil
	}
	if !strings.HasPrefix(target, "/v1/kv/") {
		return nil
	}
	if _, query, _ := strings.Cut(target, "?"); strings.Contains(query, "recurse") {
		return nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	req := &http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, len(lines)), RequestURI: target, Body: http.NoBody,
	}
	hosts, lengths := 0, 0
	for _, line := range lines[1:] {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validToken(name) || !validValue(value) {
			return nil
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		v := string(bytes.Trim(value, " \t"))
		switch key {
		case "Host":
			hosts++
			req.Host = v
			continue
		case "Content-Length":
			lengths++
			n, err := strconv.ParseUint(v, 10, 62)
			if err != nil || v == "" || v[0] == '+' {
				return nil
			}
			req.ContentLength = int64(n)
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return nil
		case "Connection":
			switch strings.ToLower(v) {
			case "close":
				req.Close = true
			case "keep-alive":
			default:
				return nil
			}
		}
		req.Header[key] = append(req.Header[key], v)
	}
	if hosts != 1 || !validHost(req.Host) || lengths > 1 || (req.ContentLength > 0 && method != http.MethodPut) {
		return nil
	}
	return req
}

// validToken reports whether b is a header name: one or more token
// characters (RFC 9110, 5.6.2).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHost reports whether h holds only the bytes net/http accepts in a
// Host header.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue reports whether b holds no control character but tab.
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// leanBody is a request body of known length read from the connection.
type leanBody struct {
	r *bufio.Reader
	n int64 // bytes left
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *leanBody) Close() error { return nil }

// leanResponse buffers a handler's answer; encode writes it out whole.
type leanResponse struct {
	h      http.Header
	req    *http.Request
	status int
	sent   http.Header // the header as of WriteHeader
	body   []byte
}

func (w *leanResponse) Header() http.Header { return w.h }

func (w *leanResponse) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return // again, or informational: net/http sends no 1xx either here
	}
	w.status = code
	w.sent = w.h.Clone()
}

func (w *leanResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// encode appends the status line, headers and body to out, as net/http
// would write them: headers sorted, Content-Type sniffed when unset,
// Content-Length and Date added.
func (w *leanResponse) encode(out []byte, keep bool) []byte {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h := w.sent
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	if text := http.StatusText(w.status); text != "" {
		out = append(out, text...)
	} else {
		out = append(out, "status code "...)
		out = strconv.AppendInt(out, int64(w.status), 10)
	}
	out = append(out, "\r\n"...)
	if !keep && h.Get("Connection") == "" {
		h.Set("Connection", "close")
	}
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if bodyAllowed(w.status) {
		if _, ok := h["Content-Type"]; !ok && len(w.body) > 0 && h.Get("X-Content-Type-Options") != "nosniff" {
			h.Set("Content-Type", http.DetectContentType(w.body))
		}
		if h.Get("Content-Length") == "" {
			h.Set("Content-Length", strconv.Itoa(len(w.body)))
		}
	} else {
		h.Del("Content-Length")
		h.Del("Transfer-Encoding")
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, k...)
			out = append(out, ": "...)
			out = appendHeaderValue(out, v)
			out = append(out, "\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	if w.req.Method != http.MethodHead && bodyAllowed(w.status) {
		out = append(out, w.body...)
	}
	return out
}

// appendHeaderValue appends v with CR and LF turned into spaces and
// surrounding blanks trimmed, as net/http writes header values.
func appendHeaderValue(out []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		out = append(out, c)
	}
	return out
}

// prefixConn is a connection whose first reads return pre.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// connQueue is the listener net/http serves: the connections handed off.
type connQueue struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to net/http; false once it stopped serving.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}
