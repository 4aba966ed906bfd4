package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// member is one node as a Cluster knows it: where it answers, its
// circuit breaker, and what the balancers weigh.
type member struct {
	addr         string // base URL, "http://host:port"
	scheme, host string // of addr, for each request's URL
	seed         bool   // given to NewCluster (not learned from the cluster)

	mu  sync.Mutex
	id  string // node id, "" until it has answered
	wgt float64

	breaker  *gobreaker.TwoStepCircuitBreaker[struct{}]
	ready    atomic.Bool // its last /readyz said ready
	answered atomic.Bool // it has answered a probe (whatever it said)

	outstanding atomic.Int64
	requests    atomic.Uint64 // requests sent to it
	failures    atomic.Uint64 // of which failed at the transport
	lat         latency
}

func newMember(addr string, seed bool, o ClusterOptions) *member {
	m := &member{addr: addr, seed: seed, wgt: 1}
	if u, err := parseBase(addr); err == nil {
		m.scheme, m.host = u.Scheme, u.Host
	}
	m.ready.Store(true)
	failures := uint32(o.BreakerFailures)
	m.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        addr,
		MaxRequests: 1,
		Timeout:     o.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// A request given up by its caller says nothing of the node.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	return m
}

func (m *member) name() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.id != "" {
		return m.id
	}
	return m.addr
}

func (m *member) nodeID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

func (m *member) setID(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id != "" {
		m.id = id
	}
}

func (m *member) weight() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wgt
}

func (m *member) setWeight(w float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w <= 0 {
		w = 1
	}
	m.wgt = w
}

// usable says whether requests may go to m: its breaker is not open.
func (m *member) usable() bool { return m.breaker.State() != gobreaker.StateOpen }

// cost is what least-response-time compares: the response time average
// scaled by the requests in flight (a member never measured costs as
// little as possible, so it is tried).
func (m *member) cost(now time.Time) float64 {
	return (m.lat.at(now) + 1) * float64(m.outstanding.Load()+1)
}

// NodeStats is what a Cluster saw of one node.
type NodeStats struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Requests were sent to the node (retries count again); Failures of
	// them failed at the transport (refused, reset, timed out).
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	// Outstanding are in flight now.
	Outstanding int64 `json:"outstanding"`
	// ResponseTime is the moving average least-response-time weighs.
	ResponseTime time.Duration `json:"response_time_ns"`
	// Breaker is "closed", "half-open" or "open"; Ready the node's last
	// /readyz.
	Breaker string  `json:"breaker"`
	Ready   bool    `json:"ready"`
	Weight  float64 `json:"weight"`
}

func (m *member) stats(now time.Time) NodeStats {
	return NodeStats{ID: m.nodeID(), Addr: m.addr, Requests: m.requests.Load(), Failures: m.failures.Load(),
		Outstanding: m.outstanding.Load(), ResponseTime: time.Duration(m.lat.at(now)), Breaker: m.breaker.State().String(),
		Ready: m.ready.Load(), Weight: m.weight()}
}

// probe asks m's /readyz through its breaker: the answer names the node,
// a transport failure counts against the breaker, and once an open
// breaker's time is up the probe is the request that may close it.
func (m *member) probe(ctx context.Context, hc *http.Client, token []string) {
	done, err := m.breaker.Allow()
	if err != nil {
		return // open: not yet time to try again
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.addr+"/readyz", nil)
	if err != nil {
		done(err)
		return
	}
	if token != nil {
		req.Header["X-Ringkv-Token"] = token
	}
	resp, err := hc.Do(req)
	if err != nil {
		m.failures.Add(1)
		done(err)
		return
	}
	resp.Body.Close()
	m.answered.Store(true)
	m.setID(resp.Header.Get("X-Served-By"))
	m.ready.Store(resp.StatusCode == http.StatusOK)
	done(nil)
}
