// Package client is the Go client of ringkv's REST API, used by the ringkv
// command and its benchmark. A Client is safe for concurrent use and keeps
// connections alive.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is an error answered by the server.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Code    string `json:"code"`
	Index   uint64 `json:"index,omitempty"`
	Leader  string `json:"leader,omitempty"`
	Limit   int64  `json:"limit,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// IsCode reports whether err is a server error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Client talks to one ringkv node.
type Client struct {
	base string
	hc   *http.Client
	// token, when set, goes with every request as X-Ringkv-Token.
	token []string
}

// New returns a client for the node at addr ("http://host:port" or
// "host:port").
func New(addr string, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !strings.Contains(addr, "://") {
		if o.tls != nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	c := &Client{base: strings.TrimRight(addr, "/"), hc: &http.Client{Transport: newTransport(o.tls, 1024), Timeout: 30 * time.Second}}
	if o.token != "" {
		c.token = []string{o.token}
	}
	return c
}

// newTransport is the HTTP transport of a client: keep-alive connections,
// up to perHost idle ones to each node.
func newTransport(cfg *tls.Config, perHost int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * perHost,
		MaxIdleConnsPerHost: perHost,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// An Option shapes a Client.
type Option func(*options)

type options struct {
	tls   *tls.Config
	token string
}

// WithToken sends token (a token's secret id) with every request, for a
// cluster with access control on.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS makes the client speak HTTPS with cfg (its CAs, and a client
// certificate for a node that requires one); an address without a scheme
// then means https://.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// Addr returns the node's base URL.
func (c *Client) Addr() string { return c.base }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// WriteResult is the answer to a put or delete.
type WriteResult struct {
	Key       string `json:"key"`
	Index     uint64 `json:"index"`
	Group     uint32 `json:"group"`
	RaftIndex uint64 `json:"raft_index"`
	Deleted   bool   `json:"deleted,omitempty"`
	ServedBy  string `json:"-"`
}

// Value is the answer to a get.
type Value struct {
	Data      []byte
	Index     uint64 // the key's modify index
	Group     uint32
	RaftIndex uint64
	ServedBy  string
}

// Entry is one element of a list.
type Entry struct {
	// Key holds the key's exact bytes (a Go string holds any).
	Key         string `json:"key"`
	KeyBase64   string `json:"key_base64,omitempty"`
	Value       []byte `json:"value"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	Group       uint32 `json:"group"`
}

// KeyPath returns the URL path of key.
func KeyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte) (*http.Response, []byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	if c.token != nil {
		req.Header["X-Ringkv-Token"] = c.token
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Message, e.Code = strings.TrimSpace(string(b)), "http_"+strconv.Itoa(resp.StatusCode)
		}
		return resp, b, e
	}
	return resp, b, nil
}

// PutOptions qualifies a put or delete.
type PutOptions struct {
	// CAS, when not nil, makes the write conditional on the key's modify
	// index (0: the key must be absent).
	CAS *uint64
	// Replication ("sync" or "async") overrides the cluster's default
	// write acknowledgement; empty keeps it.
	Replication string
}

// Put writes key=value.
func (c *Client) Put(ctx context.Context, key string, value []byte, o PutOptions) (WriteResult, error) {
	return c.write(ctx, http.MethodPut, key, value, o)
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string, o PutOptions) (WriteResult, error) {
	return c.write(ctx, http.MethodDelete, key, nil, o)
}

func (c *Client) write(ctx context.Context, method, key string, value []byte, o PutOptions) (WriteResult, error) {
	q := url.Values{}
	if o.CAS != nil {
		q.Set("cas", strconv.FormatUint(*o.CAS, 10))
	}
	if o.Replication != "" {
		q.Set("replication", o.Replication)
	}
	if value == nil && method == http.MethodPut {
		value = []byte{}
	}
	var res WriteResult
	ctx = withRoute(ctx, route{key: key, keyed: true, leader: true})
	resp, b, err := c.do(ctx, method, KeyPath(key), q, value)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("bad reply: %w", err)
	}
	// The answer's key is text (lossy for bytes that are not UTF-8);
	// the key written is the one sent.
	res.Key = key
	res.ServedBy = resp.Header.Get("X-Served-By")
	return res, nil
}

// Get reads key; consistency is "", "linearizable", "lease" or "stale".
func (c *Client) Get(ctx context.Context, key, consistency string) (Value, error) {
	q := url.Values{}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	ctx = withRoute(ctx, route{key: key, keyed: true, leader: consistency != "stale"})
	resp, b, err := c.do(ctx, http.MethodGet, KeyPath(key), q, nil)
	if err != nil {
		return Value{}, err
	}
	v := Value{Data: b, ServedBy: resp.Header.Get("X-Served-By")}
	v.Index, _ = strconv.ParseUint(resp.Header.Get("X-KV-Index"), 10, 64)
	g, _ := strconv.ParseUint(resp.Header.Get("X-Raft-Group"), 10, 32)
	v.Group = uint32(g)
	v.RaftIndex, _ = strconv.ParseUint(resp.Header.Get("X-Raft-Index"), 10, 64)
	return v, nil
}

// ListOptions selects keys for List.
type ListOptions struct {
	Limit       int
	After       string
	Consistency string
}

// List returns the entries whose keys start with prefix, in key order.
func (c *Client) List(ctx context.Context, prefix string, o ListOptions) ([]Entry, error) {
	var out []Entry
	if err := c.list(ctx, prefix, o, false, &out); err != nil {
		return nil, err
	}
	for i := range out {
		if err := out[i].exactKey(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// exactKey puts the key's exact bytes in Key when the server sent them
// apart, as it does for keys that are not valid UTF-8.
func (e *Entry) exactKey() error {
	if e.KeyBase64 == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(e.KeyBase64)
	if err != nil {
		return fmt.Errorf("list entry: key_base64 %q: %w", e.KeyBase64, err)
	}
	e.Key, e.KeyBase64 = string(b), ""
	return nil
}

// Keys returns the keys starting with prefix, in order.
func (c *Client) Keys(ctx context.Context, prefix string, o ListOptions) ([]string, error) {
	// A key that is not valid UTF-8 comes as {"key_base64": ...}.
	var raw []json.RawMessage
	if err := c.list(ctx, prefix, o, true, &raw); err != nil {
		return nil, err
	}
	out := make([]string, len(raw))
	for i, r := range raw {
		if json.Unmarshal(r, &out[i]) == nil {
			continue
		}
		var e Entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("keys list element %s: %w", r, err)
		}
		if err := e.exactKey(); err != nil {
			return nil, err
		}
		out[i] = e.Key
	}
	return out, nil
}

func (c *Client) list(ctx context.Context, prefix string, o ListOptions, keys bool, out interface{}) error {
	q := url.Values{"recurse": {""}}
	if keys {
		q.Set("keys", "")
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Consistency != "" {
		q.Set("consistency", o.Consistency)
	}
	_, b, err := c.do(withRoute(ctx, route{key: prefix}), http.MethodGet, KeyPath(prefix), q, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// GetJSON fetches path and decodes its JSON answer into out.
func (c *Client) GetJSON(ctx context.Context, path string, q url.Values, out interface{}) error {
	_, b, err := c.do(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// PostJSON posts to path with no body and decodes the JSON answer.
func (c *Client) PostJSON(ctx context.Context, path string, out interface{}) error {
	_, b, err := c.do(ctx, http.MethodPost, path, nil, []byte{})
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Status returns the node's status document.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.GetJSON(ctx, "/v1/status", nil, &s)
}

// Healthy reports /healthz and /readyz.
func (c *Client) Healthy(ctx context.Context) (alive, ready bool, reason string) {
	if _, _, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil); err != nil {
		return false, false, err.Error()
	}
	var r struct {
		Ready  bool   `json:"ready"`
		Reason string `json:"reason"`
	}
	_, b, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil)
	json.Unmarshal(b, &r)
	if err != nil && r.Reason == "" {
		r.Reason = err.Error()
	}
	return true, r.Ready, r.Reason
}

// GroupStatus is one group in a status document.
type GroupStatus struct {
	ID           uint32   `json:"id"`
	State        string   `json:"state"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastIndex    uint64   `json:"last_index"`
	Voters       []string `json:"voters"`
	Keys         uint64   `json:"keys"`
	StateBytes   int64    `json:"state_bytes"`
	MerkleRoot   string   `json:"merkle_root"`
	MerkleIndex  uint64   `json:"merkle_index"`
}

// Status is a node's status document.
type Status struct {
	Node        string        `json:"node"`
	Replication string        `json:"replication"`
	Meta        GroupStatus   `json:"meta"`
	Groups      []GroupStatus `json:"groups"`
	Members     []struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
		RaftAddr string `json:"raft_addr"`
	} `json:"members"`
	RingEpoch uint64 `json:"ring_epoch"`
	// Protocol is the node-to-node protocol version the node speaks (0
	// from releases before versioning).
	Protocol int `json:"protocol,omitempty"`
}

// Stream sends a request whose body (if any) is read from body and returns
// the response with its body unread, for transfers too large to buffer;
// the caller closes it. It is bounded by ctx only. An error answer is
// returned as *Error.
func (c *Client) Stream(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	ctx = withRoute(ctx, route{stream: true})
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if c.token != nil {
		req.Header["X-Ringkv-Token"] = c.token
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := (&http.Client{Transport: c.hc.Transport}).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Message, e.Code = strings.TrimSpace(string(b)), "http_"+strconv.Itoa(resp.StatusCode)
		}
		return nil, e
	}
	return resp, nil
}

// PostJSONQuery posts to path?q with no body and decodes the JSON answer.
func (c *Client) PostJSONQuery(ctx context.Context, path string, q url.Values, out interface{}) error {
	_, b, err := c.do(ctx, http.MethodPost, path, q, []byte{})
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// DoJSON sends method to path with in as a JSON body (no body when nil) and
// decodes the JSON answer into out (when not nil).
func (c *Client) DoJSON(ctx context.Context, method, path string, in, out interface{}) error {
	body := []byte{}
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	_, b, err := c.do(ctx, method, path, nil, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}
