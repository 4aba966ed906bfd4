package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrOutcomeUnknown says a write was sent but its answer was lost (a
// cut connection, a timeout): it may or may not have been applied. A
// Cluster never retries such a write; the caller decides (read the key,
// or write again with a CAS).
var ErrOutcomeUnknown = errors.New("outcome unknown: the write was sent and may or may not have been applied")

// Is makes a 504 (code timeout) answer match ErrOutcomeUnknown.
func (e *Error) Is(target error) bool {
	return target == ErrOutcomeUnknown && (e.Status == http.StatusGatewayTimeout || e.Code == "timeout")
}

// route is what a Cluster method says of its request, through the
// context, so that the transport can choose the node.
type route struct {
	key   string
	keyed bool // key names one key (not a list prefix)
	// leader: the request is best served by the key's group leader
	// (writes, linearizable and lease reads).
	leader bool
	// stream: a transfer bounded by its context only, not by the
	// Cluster's request timeout.
	stream bool
}

type routeKey struct{}

func withRoute(ctx context.Context, r route) context.Context {
	return context.WithValue(ctx, routeKey{}, r)
}

// refusedCodes are the answers that say a request was refused before
// anything was proposed: any request may be sent again.
var refusedCodes = []string{"unavailable", "no_leader", "moved", "not_leader"}

// RoundTrip sends one request of the Cluster's client: to the leader of
// its key's group when direct routing knows it, or to the node the
// balancer picks, again to another node while that is safe.
func (c *Cluster) RoundTrip(req *http.Request) (*http.Response, error) {
	// The timeout is the request's context's, not http.Client's, which
	// would replace the error and lose ErrOutcomeUnknown; it ends when
	// the answer's body is closed.
	// A stream (Client.Stream: a backup, a restore) is bounded by its
	// context only, as it is through a single node.
	var tctx context.Context
	var cancel context.CancelFunc
	if st, _ := req.Context().Value(routeKey{}).(route); st.stream {
		tctx, cancel = context.WithCancel(req.Context())
	} else {
		tctx, cancel = context.WithTimeout(req.Context(), c.opts.Timeout)
	}
	resp, err := c.roundTrip(req.WithContext(tctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (c *Cluster) roundTrip(req *http.Request) (*http.Response, error) {
	rt, _ := req.Context().Value(routeKey{}).(route)
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		// A stream cannot be sent twice: one attempt.
		m := c.choose(rt, req.URL.Path, nil)
		resp, err := c.attempt(req, req.Body, m)
		if err != nil && !idempotent && !errors.Is(err, errNotSent) {
			err = fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
		}
		return resp, err
	}
	var triedArr [4]*member
	tried := triedArr[:0]
	op := func() (*http.Response, error) {
		m := c.choose(rt, req.URL.Path, tried)
		tried = append(tried, m)
		body := req.Body
		if req.GetBody != nil {
			var err error
			if body, err = req.GetBody(); err != nil {
				return nil, backoff.Permanent(err)
			}
		}
		resp, err := c.attempt(req, body, m)
		switch {
		case err == nil && resp.StatusCode == http.StatusServiceUnavailable:
			code := peekCode(resp)
			if slices.Contains(refusedCodes, code) {
				if code != "unavailable" {
					c.refreshSoon()
				}
				if len(tried) < c.opts.MaxAttempts {
					resp.Body.Close()
					return nil, fmt.Errorf("%s refused it (%s)", m.name(), code)
				}
			}
			return resp, nil
		case err == nil:
			return resp, nil
		case errors.Is(err, errNotSent) || idempotent:
			return nil, err // safe to send again
		default:
			return nil, backoff.Permanent(fmt.Errorf("%w: %v", ErrOutcomeUnknown, err))
		}
	}
	// The first attempt goes out at once; the backoff's machinery is only
	// set up for a request that needs another, and then handles the first
	// attempt's outcome as its own.
	resp, err := op()
	if err == nil {
		return resp, nil
	}
	first := true
	again := func() (*http.Response, error) {
		if first {
			first = false
			return resp, err
		}
		return op()
	}
	b := &backoff.ExponentialBackOff{InitialInterval: 20 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: time.Second}
	return backoff.Retry(req.Context(), again, backoff.WithBackOff(b), backoff.WithMaxTries(uint(c.opts.MaxAttempts)), backoff.WithMaxElapsedTime(0))
}

// errNotSent marks a failure before the request left: it reached no node.
var errNotSent = errors.New("not sent")

// attempt sends req, with body, to m through m's breaker, and learns from
// the answer.
func (c *Cluster) attempt(req *http.Request, body io.ReadCloser, m *member) (*http.Response, error) {
	done, err := m.breaker.Allow()
	if err != nil {
		// Open (or half-open and busy): every member was, or this
		// one was the only choice.
		return nil, fmt.Errorf("%w: %s: circuit breaker %v", errNotSent, m.name(), err)
	}
	// A shallow copy: RoundTrip leaves the request, its header included,
	// as it found it, and each attempt needs only its own URL and body.
	out := new(http.Request)
	*out = *req
	u := *req.URL
	u.Scheme, u.Host = m.scheme, m.host
	out.URL, out.Host, out.Body = &u, "", body
	m.requests.Add(1)
	m.outstanding.Add(1)
	start := time.Now()
	resp, err := c.transport.RoundTrip(out)
	m.outstanding.Add(-1)
	if err != nil {
		if req.Context().Err() == nil {
			m.failures.Add(1)
		}
		done(err)
		if isDialError(err) {
			err = fmt.Errorf("%w: %v", errNotSent, err)
		}
		return nil, err
	}
	m.lat.observe(time.Since(start), time.Now())
	done(nil)
	c.learn(resp, m)
	return resp, nil
}

// isDialError says the connection was never made, so nothing was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// peekCode reads an error answer's code and leaves its body readable.
func peekCode(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var e struct {
		Code string `json:"code"`
	}
	json.Unmarshal(b, &e)
	return e.Code
}

// learn takes what an answer says of the cluster: who served it (a
// write is served by its group's leader), and the ring epoch the node
// routes by.
func (c *Cluster) learn(resp *http.Response, m *member) {
	h := resp.Header
	if resp.StatusCode < 300 && (resp.Request.Method == http.MethodPut || resp.Request.Method == http.MethodDelete) {
		if by, g := h.Get("X-Served-By"), h.Get("X-Raft-Group"); by != "" && g != "" {
			if gid, err := strconv.ParseUint(g, 10, 32); err == nil {
				c.setLeader(uint32(gid), by)
			}
		}
	}
	if e := h.Get("X-Ring-Epoch"); e != "" {
		if epoch, err := strconv.ParseUint(e, 10, 64); err == nil && epoch > c.routes.Load().epoch && !c.ringDenied.Load() {
			c.refreshSoon()
		}
	}
}
