package raftnode

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

// forwarder sends requests to other nodes. Node-to-node calls (forwarded
// requests, checkpoints, restores) travel on the peers' Raft ports: small
// requests on forwarding streams, the rest as HTTP over connections opened
// with the mux header for transport.PeerHTTPGroup, batching concurrent requests bound
// for the same node. Only the public calls a node makes (joining through a
// URL it was given, reading a peer's status) use the peers' client port.
type forwarder struct {
	client *http.Client // to client ports
	peer   *http.Client // to Raft ports, once set
	// streams is set once the Raft port is open.
	streams *streams
	mu      sync.Mutex
	dests   map[string]*destination
}

func newForwarder() *forwarder {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &forwarder{client: &http.Client{Transport: tr}, dests: map[string]*destination{}}
}

// usePeerLayer makes node-to-node HTTP dial peers' Raft ports through
// layer (the mux's transport.PeerHTTPGroup layer), where the fault hook applies too.
func (f *forwarder) usePeerLayer(layer raft.StreamLayer) {
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

// usePeerTLS makes the calls to peers' client ports (a join through an
// https:// URL) verify them against the peer CA and present this node's
// certificate, as read at each dial.
func (f *forwarder) usePeerTLS(p *transport.PeerTLS) {
	tr := f.client.Transport.(*http.Transport)
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: p.Client(addr)}
		return d.DialContext(ctx, network, addr)
	}
}

// peerURL is the URL of an internal endpoint on the node at a Raft address.
func peerURL(raftAddr, path string) string { return "http://" + raftAddr + path }

func (f *forwarder) close() {
	f.client.CloseIdleConnections()
	if f.peer != nil {
		f.peer.CloseIdleConnections()
	}
	if f.streams != nil {
		f.streams.close()
	}
}

// to runs req on the node info describes: on the forwarding stream to its
// Raft port if the request is a small one, else over HTTP to that port.
func (f *forwarder) to(ctx context.Context, info layout.NodeInfo, req Request) (Response, error) {
	if f.streams != nil && streamed(req.Op) && info.RaftAddr != "" {
		resp, err := f.streams.forward(ctx, info.RaftAddr, req)
		if !errors.Is(err, errNoStreams) {
			return resp, err
		}
	}
	return f.forward(ctx, info.RaftAddr, req)
}

func baseURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

// Batch is the body of a forwarding call: requests bound for one node,
// each with its own remaining deadline.
type Batch struct {
	Requests []BatchItem `json:"requests"`
}

// BatchItem is one forwarded request.
type BatchItem struct {
	Request
	DeadlineMS int64 `json:"deadline_ms"`
}

// BatchReply answers a Batch, one result per request, in order.
type BatchReply struct {
	Results []BatchResult `json:"results"`
}

// BatchResult is a response or an error.
type BatchResult struct {
	Response *Response       `json:"response,omitempty"`
	Error    *base.WireError `json:"error,omitempty"`
}

// DecodeBatch parses and validates a forwarding call's body.
func DecodeBatch(b []byte) (Batch, error) {
	var batch Batch
	if err := json.Unmarshal(b, &batch); err != nil {
		return batch, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	if len(batch.Requests) == 0 || len(batch.Requests) > maxBatch {
		return batch, fmt.Errorf("%w: batch of %d requests (want 1 to %d)", base.ErrBadRequest, len(batch.Requests), maxBatch)
	}
	for i, it := range batch.Requests {
		if err := it.Validate(); err != nil {
			return batch, fmt.Errorf("request %d: %w", i, err)
		}
		if it.DeadlineMS < 0 {
			return batch, fmt.Errorf("%w: request %d: negative deadline", base.ErrBadRequest, i)
		}
	}
	return batch, nil
}

// maxBatch bounds the requests in one forwarding call.
const maxBatch = 256

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

func (f *forwarder) dest(addr string) *destination {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dests[addr]
	if d == nil {
		d = &destination{addr: addr}
		f.dests[addr] = d
	}
	return d
}

// forward runs req on the node at raftAddr. Concurrent requests to the same
// node share HTTP calls. A transport failure after a write may have been
// sent is reported as ErrOutcomeUnknown.
func (f *forwarder) forward(ctx context.Context, raftAddr string, req Request) (Response, error) {
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
		if req.isWrite() {
			return Response{}, fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrOutcomeUnknown, raftAddr)
		}
		return Response{}, fmt.Errorf("%w: forwarded to %s, no answer in time", base.ErrUnavailable, raftAddr)
	}
}

// send drains d's queue in calls of up to maxBatch requests.
func (f *forwarder) send(d *destination) {
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
		f.call(d.addr, batch)
	}
}

// call sends one batch and hands each caller its result.
func (f *forwarder) call(addr string, batch []*pending) {
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
	ctx, cancel := context.WithDeadline(context.Background(), last)
	defer cancel()
	fail := func(err error, sent bool) {
		for _, p := range batch {
			e := fmt.Errorf("%w: forwarding to %s: %v", base.ErrNoLeader, addr, err)
			if sent && p.req.isWrite() {
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
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, peerURL(addr, ForwardPath), bytes.NewReader(mustJSON(body)))
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

// ServeBatch runs a forwarded batch here, each request concurrently under
// its own deadline, so that Raft can commit them together.
func (n *Node) ServeBatch(ctx context.Context, b Batch) BatchReply {
	reply := BatchReply{Results: make([]BatchResult, len(b.Requests))}
	var wg sync.WaitGroup
	for i, it := range b.Requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, time.Duration(it.DeadlineMS)*time.Millisecond)
			defer cancel()
			resp, err := n.Serve(rctx, it.Request)
			if err != nil {
				w := base.ToWire(err)
				reply.Results[i].Error = &w
				return
			}
			reply.Results[i].Response = &resp
		}()
	}
	wg.Wait()
	return reply
}

// join posts this node's details to an existing node's join endpoint.
// token, when set, goes as X-Ringkv-Token: a cluster with access control
// admits a node with a token allowing operator write.
func (f *forwarder) join(ctx context.Context, url string, self layout.NodeInfo, token string) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL(url)+"/v1/cluster/join", bytes.NewReader(mustJSON(self)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if token != "" {
		hreq.Header.Set("X-Ringkv-Token", token)
	}
	hresp, err := f.client.Do(hreq)
	if err != nil {
		return err
	}
	defer hresp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if hresp.StatusCode != http.StatusOK {
		var we base.WireError
		if json.Unmarshal(body, &we) == nil && we.Code != "" {
			return base.FromWire(we)
		}
		return fmt.Errorf("join via %s: status %d", url, hresp.StatusCode)
	}
	return nil
}

// PeerSecretPath is where a node hands its cluster's peer secret to a
// node about to join (operator write).
const PeerSecretPath = "/v1/cluster/peer-secret"

// PeerSecretDoc is the body of PeerSecretPath.
type PeerSecretDoc struct {
	PeerSecret string `json:"peer_secret"`
}

// peerSecret fetches the cluster's peer secret from the node at url, as
// join does, with the same token.
func (f *forwarder) peerSecret(ctx context.Context, url, token string) ([]byte, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(url)+PeerSecretPath, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		hreq.Header.Set("X-Ringkv-Token", token)
	}
	hresp, err := f.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer hresp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(hresp.Body, 64<<10))
	if hresp.StatusCode != http.StatusOK {
		var we base.WireError
		if json.Unmarshal(body, &we) == nil && we.Code != "" {
			return nil, base.FromWire(we)
		}
		return nil, fmt.Errorf("peer secret via %s: status %d", url, hresp.StatusCode)
	}
	var doc PeerSecretDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("peer secret via %s: %w", url, err)
	}
	return transport.ParsePeerSecret(doc.PeerSecret)
}

// status fetches a peer's status document on its Raft port, which peers
// may read whatever the client port's access control says.
func (f *forwarder) status(ctx context.Context, peer layout.NodeInfo) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(peer.RaftAddr, PeerStatusPath), nil)
	if err != nil {
		return st, err
	}
	body := &limitedBuffer{limit: 16 << 20}
	if err := f.stream(req, body); err != nil {
		return st, fmt.Errorf("status of %s: %w", peer.ID, err)
	}
	return st, json.Unmarshal(body.Bytes(), &st)
}
