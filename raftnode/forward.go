package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/transport"
)

// ServeBatch runs a forwarded batch here, each request concurrently under
// its own deadline, so that Raft can commit them together.
func (n *Node) ServeBatch(ctx context.Context, b protocol.Batch) protocol.BatchReply {
	reply := protocol.BatchReply{Results: make([]protocol.BatchResult, len(b.Requests))}
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
func joinVia(f *protocol.Forwarder, ctx context.Context, url string, self layout.NodeInfo, token string) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, protocol.BaseURL(url)+"/v1/cluster/join", bytes.NewReader(mustJSON(self)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if token != "" {
		hreq.Header.Set("X-Ringkv-Token", token)
	}
	hresp, err := f.Client().Do(hreq)
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
func fetchPeerSecret(f *protocol.Forwarder, ctx context.Context, url, token string) ([]byte, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, protocol.BaseURL(url)+PeerSecretPath, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		hreq.Header.Set("X-Ringkv-Token", token)
	}
	hresp, err := f.Client().Do(hreq)
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
func peerStatus(f *protocol.Forwarder, ctx context.Context, peer layout.NodeInfo) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, protocol.PeerURL(peer.RaftAddr, PeerStatusPath), nil)
	if err != nil {
		return st, err
	}
	body := &limitedBuffer{limit: 16 << 20}
	if err := f.Stream(req, body); err != nil {
		return st, fmt.Errorf("status of %s: %w", peer.ID, err)
	}
	return st, json.Unmarshal(body.Bytes(), &st)
}
