package protocol

import (
	"bufio"
	"context"
	"net"
	"time"

	"github.com/ringkv/ringkv/base"
)

// ServeStream runs the requests of one forwarding stream with serve, after
// a greeting that says version (Version; an earlier one in tests), each under its
// own deadline and concurrently, so that Raft commits them together, and
// writes each result as soon as it is ready.
func ServeStream(ctx context.Context, c net.Conn, self base.NodeID, version int, serve func(context.Context, Request) (Response, error)) {
	defer c.Close()
	out := make(chan []byte, 1024)
	done := make(chan struct{})
	defer close(done)
	go func() {
		bw := bufio.NewWriterSize(c, 64<<10)
		wdl := deadline{set: c.SetWriteDeadline, limit: writeLimit}
		for {
			select {
			case f := <-out:
				var err error
				for f != nil && err == nil {
					_, err = bw.Write(f)
					f = nextQueued(out)
				}
				if err == nil {
					wdl.extend()
					err = bw.Flush()
				}
				if err != nil {
					c.Close()
					return
				}
			case <-done:
				return
			}
		}
	}()
	send := func(f []byte) {
		select {
		case out <- f:
		case <-done:
		}
	}
	send(appendFrame(nil, framePong, 0, greeting(version))) // the greeting: the protocol version
	answer := func(id uint64, resp Response, err error) {
		var r BatchResult
		if err != nil {
			w := base.ToWire(err)
			r.Error = &w
		} else {
			r.Response = &resp
		}
		send(appendFrame(nil, frameResult, id, encodeStreamResult(r)))
	}
	slots := make(chan struct{}, maxStreamInflight)
	br := bufio.NewReaderSize(c, 64<<10)
	rdl := deadline{set: c.SetReadDeadline, limit: serveIdle}
	for {
		rdl.extend()
		kind, id, body, err := readFrame(br)
		if err != nil {
			return
		}
		switch kind {
		case framePing:
			send(appendFrame(nil, framePong, id, nil))
			continue
		case frameRequest:
		default:
			return
		}
		it, err := DecodeStreamRequest(body)
		if err != nil {
			answer(id, Response{ServedBy: self}, err)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-slots }()
			rctx, cancel := context.WithTimeout(ctx, time.Duration(it.DeadlineMS)*time.Millisecond)
			defer cancel()
			resp, err := serve(rctx, it.Request)
			answer(id, resp, err)
		}()
	}
}
