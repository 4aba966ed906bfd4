package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// echo answers with what it saw of the request, so that two servers can be
// compared on the same bytes.
func echo(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/kv/panic":
		panic("boom")
	case "/v1/kv/empty":
		w.WriteHeader(http.StatusNoContent)
		return
	case "/v1/kv/sniff":
		w.Write([]byte("<html><body>hi</body></html>"))
		return
	case "/v1/kv/close":
		w.Header().Set("Connection", "close")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64))
	if err != nil {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprintln(w, err)
		return
	}
	var keys []string
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Echo", "yes")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "%s %s raw=%q query=%q host=%q len=%d close=%v remote=%v body=%q\n",
		r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host, r.ContentLength, r.Close, r.RemoteAddr != "", body)
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %q\n", k, r.Header[k])
	}
	if r.Context().Err() != nil {
		fmt.Fprintln(w, "context already done")
	}
}

// start serves h on a loopback port with the lean server, or with net/http
// alone configured the same way.
func start(t testing.TB, h http.Handler, lean bool) (addr string, s *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s = NewServer("", h)
	s.std.ErrorLog = log.New(io.Discard, "", 0) // the panic case
	if lean {
		go s.Serve(ln)
	} else {
		go s.std.Serve(ln)
	}
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String(), s
}

// exchange writes raw on a new connection and reads the answers to n
// requests, then whether the server closed the connection.
func exchange(t *testing.T, addr, raw string, n int, head bool) (answers []string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for range n {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			answers = append(answers, "no answer: "+errKind(err))
			return answers, true
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Del("Date")
		var hb bytes.Buffer
		resp.Header.Write(&hb)
		answers = append(answers, fmt.Sprintf("%s close=%v\n%s\n%s", resp.Status, resp.Close, hb.String(), body))
	}
	// A server that keeps the connection answers nothing more: the read
	// times out. One that closed it gives EOF.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = br.ReadByte()
	var ne net.Error
	return answers, !(errors.As(err, &ne) && ne.Timeout())
}

func errKind(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "EOF"
	}
	return "error"
}

// The lean server answers every request exactly as net/http does: those in
// its subset itself, the others by handing the connection over.
func TestLeanServerAnswersAsNetHTTP(t *testing.T) {
	h := http.HandlerFunc(echo)
	stdAddr, _ := start(t, h, false)
	leanAddr, lean := start(t, h, true)
	const host = "Host: db\r\n"
	cases := []struct {
		name string
		raw  string
		n    int
		lean uint64 // requests the lean loop should answer itself
		head bool
	}{
		{"put", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", 1, 1, false},
		{"get", "GET /v1/kv/a?consistency=stale HTTP/1.1\r\n" + host + "Accept: */*\r\n\r\n", 1, 1, false},
		{"delete", "DELETE /v1/kv/a?cas=3 HTTP/1.1\r\n" + host + "\r\n", 1, 1, false},
		{"encoded key", "GET /v1/kv/a%2Fb/../c/./d%20e HTTP/1.1\r\n" + host + "\r\n", 1, 1, false},
		{"repeated and odd headers", "PUT /v1/kv/a HTTP/1.1\r\nhost: db\r\nx-a: 1\r\nX-A:  2 \r\nx_b:\t\tv\r\ncontent-length: 0\r\n\r\n", 1, 1, false},
		{"connection close", "GET /v1/kv/a HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", 1, 1, false},
		{"handler closes", "GET /v1/kv/close HTTP/1.1\r\n" + host + "\r\n", 1, 1, false},
		{"pipelined", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\nxGET /v1/kv/b HTTP/1.1\r\n" + host + "\r\nDELETE /v1/kv/c HTTP/1.1\r\n" + host + "\r\n", 3, 3, false},
		{"leading empty line", "\r\nGET /v1/kv/a HTTP/1.1\r\n" + host + "\r\n", 1, 0, false},
		{"no content", "GET /v1/kv/empty HTTP/1.1\r\n" + host + "\r\n", 1, 1, false},
		{"sniffed type", "GET /v1/kv/sniff HTTP/1.1\r\n" + host + "\r\n", 1, 1, false},
		{"body too large, connection closed", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 100\r\n\r\n" + strings.Repeat("v", 100) + "GET /v1/kv/b HTTP/1.1\r\n" + host + "\r\n", 2, 1, false},
		{"body too large and unsent", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1000000\r\n\r\n" + strings.Repeat("v", 1000), 1, 1, false},
		{"panic", "GET /v1/kv/panic HTTP/1.1\r\n" + host + "\r\n", 1, 0, false},
		// Handed over to net/http:
		{"chunked", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1, 0, false},
		{"expect", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nab", 2, 0, false},
		{"http/1.0", "GET /v1/kv/a HTTP/1.0\r\n\r\n", 1, 0, false},
		{"head", "HEAD /v1/kv/a HTTP/1.1\r\n" + host + "\r\n", 1, 0, true},
		{"other path", "GET /v1/status HTTP/1.1\r\n" + host + "\r\n", 1, 0, false},
		{"recurse", "GET /v1/kv/?recurse HTTP/1.1\r\n" + host + "\r\n", 1, 0, false},
		{"missing host", "GET /v1/kv/a HTTP/1.1\r\n\r\n", 1, 0, false},
		{"two hosts", "GET /v1/kv/a HTTP/1.1\r\n" + host + host + "\r\n", 1, 0, false},
		{"bad host", "GET /v1/kv/a HTTP/1.1\r\nHost: d b\r\n\r\n", 1, 0, false},
		{"space before colon", "GET /v1/kv/a HTTP/1.1\r\n" + host + "X-A : 1\r\n\r\n", 1, 0, false},
		{"bare LF", "GET /v1/kv/a HTTP/1.1\n" + "Host: db\n\n", 1, 0, false},
		{"bad length", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1x\r\n\r\n", 1, 0, false},
		{"two lengths", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 1, 0, false},
		{"body on get", "GET /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nab", 1, 0, false},
		{"header too large", "GET /v1/kv/a HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("b", 80<<10) + "\r\n\r\n", 1, 0, false},
		{"absolute target", "GET http://db/v1/kv/a HTTP/1.1\r\n" + host + "\r\n", 1, 0, false},
		{"garbage", "HELLO\r\n\r\n", 1, 0, false},
		// The lean loop answers, then hands over mid-connection:
		{"lean then handed over", "PUT /v1/kv/a HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\nxGET /v1/status HTTP/1.1\r\n" + host + "\r\nGET /v1/kv/b HTTP/1.1\r\n" + host + "\r\n", 3, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := lean.leanServed.Load()
			want, wantClosed := exchange(t, stdAddr, tc.raw, tc.n, tc.head)
			got, gotClosed := exchange(t, leanAddr, tc.raw, tc.n, tc.head)
			if strings.Join(got, "\n---\n") != strings.Join(want, "\n---\n") {
				t.Fatalf("lean server answered\n%s\nnet/http answered\n%s", strings.Join(got, "\n---\n"), strings.Join(want, "\n---\n"))
			}
			if gotClosed != wantClosed {
				t.Fatalf("lean server closed the connection: %v; net/http: %v", gotClosed, wantClosed)
			}
			if served := lean.leanServed.Load() - before; served != tc.lean {
				t.Fatalf("the lean loop answered %d requests, want %d", served, tc.lean)
			}
		})
	}
}

// Shutdown closes idle connections, waits for the request in progress and
// makes Serve return http.ErrServerClosed.
func TestLeanServerShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/kv/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer("", h)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /v1/kv/a HTTP/1.1\r\nHost: db\r\n\r\n")
	idleR := bufio.NewReader(idle)
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first answer: %v %v", resp, err)
	}
	io.ReadAll(resp.Body)

	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /v1/kv/slow HTTP/1.1\r\nHost: db\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed...
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idleR.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
	// ...while Shutdown waits for the busy one.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in progress", err)
	default:
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in progress: %v", err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "done" {
		t.Fatalf("request in progress answered %q", body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

// A connection that stays idle past IdleTimeout, or sends half a header
// for longer than ReadHeaderTimeout, is closed.
func TestLeanServerTimeouts(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer("", h)
	s.std.IdleTimeout = 200 * time.Millisecond
	s.std.ReadHeaderTimeout = 200 * time.Millisecond
	go s.Serve(ln)
	defer s.Close()
	for _, raw := range []string{
		"GET /v1/kv/a HTTP/1.1\r\nHost: db\r\n\r\n", // answered, then idle
		"GET /v1/kv/a HTTP/1.1\r\nHost:",            // never finishes its header
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		// Far longer than the timeouts, to tell a closed connection from a
		// slow machine; a server that never closes fails at this deadline.
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		rest, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("%q: the server kept the connection: %v", raw, err)
		}
		if strings.HasSuffix(raw, "\r\n\r\n") != strings.HasPrefix(string(rest), "HTTP/1.1 200") {
			t.Fatalf("%q: answered %q", raw, rest)
		}
	}
}

// FuzzParseLean checks the lean parser against net/http's: a request it
// takes is read by net/http the same way; it never panics.
func FuzzParseLean(f *testing.F) {
	f.Add([]byte("PUT /v1/kv/a HTTP/1.1\r\nHost: db\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("GET /v1/kv/a%2Fb?consistency=stale HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("DELETE /v1/kv/x HTTP/1.1\r\nhost: db\r\nX-A: 1\r\nx-a: 2\r\n\r\n"))
	f.Add([]byte("GET /v1/kv/a HTTP/1.1\r\nHost: db\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		head, err := readHead(bufio.NewReader(bytes.NewReader(raw)), 64<<10)
		if err != nil {
			return
		}
		req := parseLean(head)
		if req == nil {
			return
		}
		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("lean parser took %q, net/http refuses it: %v", head, err)
		}
		if std.Method != req.Method || std.RequestURI != req.RequestURI || std.Host != req.Host ||
			std.ContentLength != req.ContentLength || std.Close != req.Close ||
			std.URL.String() != req.URL.String() || std.URL.RawPath != req.URL.RawPath {
			t.Fatalf("%q: lean %s %s host=%q len=%d close=%v, net/http %s %s host=%q len=%d close=%v",
				head, req.Method, req.RequestURI, req.Host, req.ContentLength, req.Close,
				std.Method, std.RequestURI, std.Host, std.ContentLength, std.Close)
		}
		var a, b bytes.Buffer
		req.Header.Write(&a)
		std.Header.Write(&b)
		if a.String() != b.String() {
			t.Fatalf("%q: lean headers\n%s\nnet/http headers\n%s", head, a.String(), b.String())
		}
	})
}

// BenchmarkServer compares the lean loop with net/http on keep-alive PUTs
// from 16 clients (client and server in one process: compare the two, not
// the figures with a real deployment).
func BenchmarkServer(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"key":"k","index":1}`)
	})
	for _, lean := range []bool{true, false} {
		name := "net-http"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			addr, _ := start(b, h, lean)
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			body := bytes.Repeat([]byte("v"), 128)
			b.SetParallelism(8) // 16 clients on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/k", bytes.NewReader(body))
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
