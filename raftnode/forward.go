package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ForwardPath is the internal endpoint a node serves forwarded requests on.
const ForwardPath = "/v1/internal/forward"

// DeadlineHeader carries the forwarding node's remaining deadline in ms.
const DeadlineHeader = "X-Ringkv-Deadline-Ms"

// forwarder sends requests to peers' internal endpoint over keep-alive HTTP.
type forwarder struct {
	client *http.Client
}

func newForwarder() *forwarder {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &forwarder{client: &http.Client{Transport: tr}}
}

func (f *forwarder) close() { f.client.CloseIdleConnections() }

func baseURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return strings.TrimRight(addr, "/")
	}
	return "http://" + addr
}

// forward runs req on the node at httpAddr. A transport failure after a
// write may have been sent is reported as ErrOutcomeUnknown.
func (f *forwarder) forward(ctx context.Context, httpAddr string, req Request) (Response, error) {
	var resp Response
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL(httpAddr)+ForwardPath, bytes.NewReader(mustJSON(req)))
	if err != nil {
		return resp, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if dl, ok := ctx.Deadline(); ok {
		// Leave the peer a margin to answer before this node gives up.
		ms := time.Until(dl).Milliseconds() - 50
		hreq.Header.Set(DeadlineHeader, strconv.FormatInt(max(ms, 1), 10))
	}
	hresp, err := f.client.Do(hreq)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || !req.isWrite() {
			return resp, fmt.Errorf("%w: forwarding to %s: %v", ErrNoLeader, httpAddr, err)
		}
		return resp, fmt.Errorf("%w: forwarding to %s: %v", ErrOutcomeUnknown, httpAddr, err)
	}
	defer hresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, 256<<20))
	if err != nil {
		if req.isWrite() {
			return resp, fmt.Errorf("%w: reading forwarded reply: %v", ErrOutcomeUnknown, err)
		}
		return resp, fmt.Errorf("%w: reading forwarded reply: %v", ErrUnavailable, err)
	}
	if hresp.StatusCode != http.StatusOK {
		var we WireError
		if json.Unmarshal(body, &we) != nil || we.Code == "" {
			return resp, fmt.Errorf("forwarding to %s: status %d: %s", httpAddr, hresp.StatusCode, bytes.TrimSpace(body))
		}
		return resp, FromWire(we)
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return resp, fmt.Errorf("forwarding to %s: bad reply: %v", httpAddr, err)
	}
	return resp, nil
}

// join posts this node's details to an existing node's join endpoint.
func (f *forwarder) join(ctx context.Context, url string, self NodeInfo) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL(url)+"/v1/cluster/join", bytes.NewReader(mustJSON(self)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := f.client.Do(hreq)
	if err != nil {
		return err
	}
	defer hresp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if hresp.StatusCode != http.StatusOK {
		var we WireError
		if json.Unmarshal(body, &we) == nil && we.Code != "" {
			return FromWire(we)
		}
		return fmt.Errorf("join via %s: status %d", url, hresp.StatusCode)
	}
	return nil
}

// status fetches a peer's status.
func (f *forwarder) status(ctx context.Context, httpAddr string) (Status, error) {
	var st Status
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(httpAddr)+"/v1/status", nil)
	if err != nil {
		return st, err
	}
	hresp, err := f.client.Do(hreq)
	if err != nil {
		return st, err
	}
	defer hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status of %s: %d", httpAddr, hresp.StatusCode)
	}
	return st, json.NewDecoder(io.LimitReader(hresp.Body, 16<<20)).Decode(&st)
}
