package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/transport"
)

// ForwardPath is the internal endpoint a node serves forwarded requests on.
const ForwardPath = "/v1/internal/forward"

// Forwarder sends requests to other nodes. Node-to-node calls (forwarded
// requests, checkpoints, restores) travel on the peers' Raft ports: small
// requests on forwarding streams, the rest as HTTP over connections opened
// with the mux header for transport.PeerHTTPGroup, batching concurrent requests bound
// for the same node. Only the public calls a node makes (joining through a
// URL it was given, reading a peer's status) use the peers' client port.
type Forwarder struct {
	client *http.Client // to client ports
	peer   *http.Client // to Raft ports, once set
	// streams is set once the Raft port is open.
	streams *streams
	// versions are the peers' protocol versions, as they last said them.
	versions versions
	mu       sync.Mutex
	dests    map[string]*destination
}

func NewForwarder() *Forwarder {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Forwarder{client: &http.Client{Transport: tr}, dests: map[string]*destination{}}
}

// UsePeerLayer makes node-to-node HTTP dial peers' Raft ports through
// layer (the mux's transport.PeerHTTPGroup layer), where the fault hook applies too.
func (f *Forwarder) UsePeerLayer(layer raft.StreamLayer) {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		timeout := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		return layer.Dial(raft.ServerAddress(addr), timeout)
	}
	f.peer = &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// UsePeerTLS makes the calls to peers' client ports (a join through an
// https:// URL) verify them against the peer CA and present this node's
// certificate, as read at each dial.
func (f *Forwarder) UsePeerTLS(p *transport.PeerTLS) {
	tr := f.client.Transport.(*http.Transport)
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: p.Client(addr)}
		return d.DialContext(ctx, network, addr)
	}
}

// PeerURL is the URL of an internal endpoint on the node at a Raft address.
func PeerURL(raftAddr, path string) string { return "http://" + raftAddr + path }

func (f *Forwarder) Close() {
	f.client.CloseIdleConnections()
	if f.peer != nil {
		f.peer.CloseIdleConnections()
	}
	if f.streams != nil {
		f.streams.close()
	}
}

// To runs req on the node info describes: on the forwarding stream to its
// Raft port if the request is a small one, else over HTTP to that port.
func (f *Forwarder) To(ctx context.Context, info layout.NodeInfo, req Request) (Response, error) {
	if req.Op == OpChanges {
		// It waits for changes: in a batch it would hold the others'
		// answers back.
		if v, ok := f.PeerVersion(info.RaftAddr); ok && v < 3 {
			return Response{}, fmt.Errorf("%w: %s speaks protocol %d, which has no change history; upgrade it", base.ErrUnavailable, info.ID, v)
		}
		return f.alone(ctx, info.RaftAddr, req)
	}
	if f.streams != nil && streamed(req.Op) && info.RaftAddr != "" {
		resp, err := f.streams.forward(ctx, info.RaftAddr, req)
		if !errors.Is(err, errNoStreams) {
			return resp, err
		}
	}
	return f.Forward(ctx, info.RaftAddr, req)
}

func BaseURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

// maxInflight bounds concurrent forwarding calls to one node; requests
// arriving meanwhile queue and leave together in the next call.
const maxInflight = 4

type pending struct {
	req      Request
	deadline time.Time
	done     chan BatchResult
}

// destination queues requests for one node.
type destination struct {
	addr     string
	mu       sync.Mutex
	queue    []*pending
	inflight int
}

func (f *Forwarder) dest(addr string) *destination {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dests[addr]
	if d == nil {
		d = &destination{addr: addr}
		f.dests[addr] = d
	}
	return d
}

// Forward runs req on the node at raftAddr. Concurrent requests to the same
// node share HTTP calls. A transport failure after a write may have been
// sent is reported as ErrOutcomeUnknown.
func (f *Forwarder) Forward(ctx context.Context, raftAddr string, req Request) (Response, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	p := &pending{req: req, deadline: dl, done: make(chan BatchResult, 1)}
	d := f.dest(raftAddr)
	d.mu.Lock()
	d.queue = append(d.queue, p)
	start := d.inflight < maxInflight
	if start {
		d.inflight++
	}
	d.mu.Unlock()
	if start {
		go f.send(d)
	}
	select {
	case r := <-p.done:
		if r.Error != nil {
			return Response{}, base.FromWire(*r.Error)
		}
		if r.Response == nil {
			return Response{}, fmt.Errorf("forwarding to %s: empty result", raftAddr)
		}
		return *r.Response, nil
	case <-ctx.Done():
		if req.IsWrite() {
			return Response{}, fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrOutcomeUnknown, raftAddr)
		}
		return Response{}, fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrUnavailable, raftAddr)
	}
}

// alone runs req on the node at raftAddr in a call of its own.
func (f *Forwarder) alone(ctx context.Context, raftAddr string, req Request) (Response, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	p := &pending{req: req, deadline: dl, done: make(chan BatchResult, 1)}
	go f.call(ctx, raftAddr, []*pending{p})
	select {
	case r := <-p.done:
		if r.Error != nil {
			return Response{}, base.FromWire(*r.Error)
		}
		if r.Response == nil {
			return Response{}, fmt.Errorf("forwarding to %s: empty result", raftAddr)
		}
		return *r.Response, nil
	case <-ctx.Done():
		return Response{}, fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrUnavailable, raftAddr)
	}
}

// send drains d's queue in calls of up to maxBatch requests.
func (f *Forwarder) send(d *destination) {
	for {
		d.mu.Lock()
		n := min(len(d.queue), maxBatch)
		if n == 0 {
			d.inflight--
			d.mu.Unlock()
			return
		}
		batch := d.queue[:n:n]
		d.queue = d.queue[n:]
		d.mu.Unlock()
		f.call(context.Background(), d.addr, batch)
	}
}

// call sends one batch and hands each caller its result; the call ends
// with parent, or at the batch's last deadline.
func (f *Forwarder) call(parent context.Context, addr string, batch []*pending) {
	body := Batch{Requests: make([]BatchItem, len(batch))}
	var last time.Time
	now := time.Now()
	for i, p := range batch {
		// Leave the peer a margin to answer before the caller gives up.
		ms := p.deadline.Sub(now).Milliseconds() - 50
		body.Requests[i] = BatchItem{Request: p.req, DeadlineMS: max(ms, 1)}
		if p.deadline.After(last) {
			last = p.deadline
		}
	}
	ctx, cancel := context.WithDeadline(parent, last)
	defer cancel()
	fail := func(err error, sent bool) {
		for _, p := range batch {
			e := fmt.Errorf("%w: forwarding to %s: %v", base.ErrNoLeader, addr, err)
			if sent && p.req.IsWrite() {
				e = fmt.Errorf("%w: forwarding to %s: %v", base.ErrOutcomeUnknown, addr, err)
			}
			w := base.ToWire(e)
			p.done <- BatchResult{Error: &w}
		}
	}
	if f.peer == nil {
		fail(errors.New("the Raft port is not open yet"), false)
		return
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, PeerURL(addr, ForwardPath), bytes.NewReader(mustJSON(body)))
	if err != nil {
		fail(err, false)
		return
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := f.peer.Do(hreq)
	if err != nil {
		fail(err, !errors.Is(err, syscall.ECONNREFUSED))
		return
	}
	defer hresp.Body.Close()
	f.versions.note(addr, headerVersion(hresp.Header))
	raw, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<30))
	if err != nil {
		fail(err, true)
		return
	}
	var reply BatchReply
	if hresp.StatusCode != http.StatusOK {
		var we base.WireError
		if json.Unmarshal(raw, &we) == nil && we.Code != "" {
			for _, p := range batch {
				p.done <- BatchResult{Error: &we}
			}
			return
		}
		fail(fmt.Errorf("status %d: %s", hresp.StatusCode, bytes.TrimSpace(raw)), true)
		return
	}
	if err := json.Unmarshal(raw, &reply); err != nil || len(reply.Results) != len(batch) {
		fail(fmt.Errorf("bad reply (%d results for %d requests): %v", len(reply.Results), len(batch), err), true)
		return
	}
	for i, p := range batch {
		p.done <- reply.Results[i]
	}
}

// Stream runs req on a peer's Raft port and copies a successful response
// body to w; an error response is decoded into its error.
func (f *Forwarder) Stream(req *http.Request, w io.Writer) error {
	if f.peer == nil {
		return fmt.Errorf("%w: the Raft port is not open yet", base.ErrUnavailable)
	}
	resp, err := f.peer.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", base.ErrNoLeader, req.URL.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var we base.WireError
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, &we) == nil && we.Code != "" {
			return base.FromWire(we)
		}
		return fmt.Errorf("%w: %s answered %d", base.ErrUnavailable, req.URL.Host, resp.StatusCode)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// Post sends body to url and decodes an error answer.
func (f *Forwarder) Post(ctx context.Context, url string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return f.Stream(req, io.Discard)
}
