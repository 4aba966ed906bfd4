package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/ring"
)

// Routing modes of a Cluster (ClusterOptions.Routing).
const (
	// RouteDirect sends every write and every linearizable or lease
	// read straight to the leader of its key's group.
	RouteDirect = "direct"
	// RouteAny sends every request to the node the balancer picks,
	// which forwards it to the leader when it is not.
	RouteAny = "any"
)

// ClusterOptions shape a Cluster. The zero value is usable.
type ClusterOptions struct {
	// Routing is RouteDirect (the default) or RouteAny.
	Routing string
	// Balancer picks the node for requests any node can serve (stale
	// reads, lists, operator calls) and for keyed requests whose
	// leader is not known: one of Balancers (default round-robin).
	Balancer string
	// Token goes with every request (X-Ringkv-Token); TLS makes the
	// client speak HTTPS (an endpoint without a scheme then means
	// https://).
	Token string
	TLS   *tls.Config
	// HealthInterval is how often each node's /readyz is probed
	// (default 1s; negative: never).
	HealthInterval time.Duration
	// BreakerFailures is how many transport failures in a row open a
	// node's circuit breaker (default 1: a dead node costs one failed
	// request, not one per request); BreakerOpen is how long it stays
	// open before one probe may close it (default 2s).
	BreakerFailures int
	BreakerOpen     time.Duration
	// MaxAttempts bounds the attempts of a request that may be sent
	// again (default 4).
	MaxAttempts int
	// Timeout bounds a request, its attempts included (default 30s).
	Timeout time.Duration
	// NoDiscover keeps the client to the endpoints it was given;
	// otherwise it also uses members it learns from /v1/cluster, at
	// the addresses they advertise.
	NoDiscover bool
}

func (o *ClusterOptions) defaults() error {
	switch o.Routing {
	case "":
		o.Routing = RouteDirect
	case RouteDirect, RouteAny:
	default:
		return fmt.Errorf("client: unknown routing %q (want %s or %s)", o.Routing, RouteDirect, RouteAny)
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = time.Second
	}
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 1
	}
	if o.BreakerOpen <= 0 {
		o.BreakerOpen = 2 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return nil
}

// Cluster is a client of a whole ringkv cluster. It learns the members,
// the ring and each group's leader, sends every keyed request straight to
// the node leading its key's group, balances the rest over the nodes,
// keeps dead nodes out with a circuit breaker each, and sends a request
// again only when that is safe: reads, and writes refused before they
// were proposed. It is safe for concurrent use.
type Cluster struct {
	opts      ClusterOptions
	bal       balancer
	transport *http.Transport
	probeHC   *http.Client
	token     []string
	c         *Client // the requests, through RoundTrip

	mu      sync.Mutex                // serialises changes of members
	members atomic.Pointer[[]*member] // copied on change: requests read it without a lock

	routes     atomic.Pointer[routes]
	refreshing atomic.Bool
	ringDenied atomic.Bool  // the token may not read the ring
	lastFresh  atomic.Int64 // unix nanoseconds of the last refresh

	stop chan struct{}
	wg   sync.WaitGroup
}

// routes is what direct routing knows: the ring and the groups' leaders.
type routes struct {
	epoch   uint64
	ring    *ring.Ring // nil: unknown
	leaders map[uint32]string
}

// NewCluster returns a client of the cluster reached at endpoints
// ("host:port" or URLs). It asks each endpoint which node it is and
// fails when none answers before ctx ends.
func NewCluster(ctx context.Context, endpoints []string, opts ClusterOptions) (*Cluster, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	bal, err := newBalancer(opts.Balancer)
	if err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	c := &Cluster{opts: opts, bal: bal, stop: make(chan struct{})}
	c.transport = newTransport(opts.TLS, 1024)
	c.probeHC = &http.Client{Transport: c.transport, Timeout: time.Second}
	if opts.Token != "" {
		c.token = []string{opts.Token}
	}
	c.c = &Client{base: "http://ringkv.cluster", hc: &http.Client{Transport: c}, token: c.token}
	c.routes.Store(&routes{leaders: map[uint32]string{}})
	var seeds []*member
	for _, e := range endpoints {
		addr, err := c.baseURL(e)
		if err != nil {
			return nil, err
		}
		if memberAt(seeds, addr) == nil {
			seeds = append(seeds, newMember(addr, true, opts))
		}
	}
	c.members.Store(&seeds)
	c.probeAll(ctx)
	if !c.anyAnswered() {
		c.transport.CloseIdleConnections()
		return nil, fmt.Errorf("client: none of %s answered", strings.Join(endpoints, ", "))
	}
	c.refresh(ctx)
	c.wg.Add(1)
	go c.maintain()
	return c, nil
}

// baseURL turns an endpoint into a base URL.
func (c *Cluster) baseURL(e string) (string, error) {
	if !strings.Contains(e, "://") {
		if c.opts.TLS != nil {
			e = "https://" + e
		} else {
			e = "http://" + e
		}
	}
	u, err := parseBase(e)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host, nil
}

func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("client: endpoint %q: want host:port or http(s)://host:port", s)
	}
	return u, nil
}

// Close stops the client's background work and closes its connections.
func (c *Cluster) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
	c.transport.CloseIdleConnections()
}

// Client returns a Client whose requests go through the cluster: every
// typed call of Client (status, ring, cluster, verification, ACL...)
// reaches a healthy node chosen by the balancer.
func (c *Cluster) Client() *Client { return c.c }

// Put writes key=value through its group's leader.
func (c *Cluster) Put(ctx context.Context, key string, value []byte, o PutOptions) (WriteResult, error) {
	return c.c.Put(ctx, key, value, o)
}

// Delete removes key through its group's leader.
func (c *Cluster) Delete(ctx context.Context, key string, o PutOptions) (WriteResult, error) {
	return c.c.Delete(ctx, key, o)
}

// Get reads key; consistency is "" (linearizable), "linearizable",
// "lease" or "stale". A stale read goes to the node the balancer picks,
// the others to the key's group leader.
func (c *Cluster) Get(ctx context.Context, key, consistency string) (Value, error) {
	return c.c.Get(ctx, key, consistency)
}

// List returns the entries whose keys start with prefix, in key order,
// from the node the balancer picks (keyed by the prefix).
func (c *Cluster) List(ctx context.Context, prefix string, o ListOptions) ([]Entry, error) {
	return c.c.List(ctx, prefix, o)
}

// Keys returns the keys starting with prefix, in order.
func (c *Cluster) Keys(ctx context.Context, prefix string, o ListOptions) ([]string, error) {
	return c.c.Keys(ctx, prefix, o)
}

// Watch follows the changes under prefix (Client.Watch), opening the
// stream again through another node when the one serving it fails.
func (c *Cluster) Watch(ctx context.Context, prefix string, o WatchOptions) <-chan WatchEvent {
	return c.c.Watch(ctx, prefix, o)
}

// Stats says what the client saw of each node, in the order it knows
// them.
func (c *Cluster) Stats() []NodeStats {
	now := time.Now()
	var out []NodeStats
	for _, m := range c.snapshot() {
		out = append(out, m.stats(now))
	}
	return out
}

// snapshot is the members now; the caller must not change the slice.
func (c *Cluster) snapshot() []*member { return *c.members.Load() }

func memberAt(ms []*member, addr string) *member {
	for _, m := range ms {
		if m.addr == addr {
			return m
		}
	}
	return nil
}

// memberByID is the member with node id, or nil.
func (c *Cluster) memberByID(id string) *member {
	if id == "" {
		return nil
	}
	for _, m := range c.snapshot() {
		if m.nodeID() == id {
			return m
		}
	}
	return nil
}

// choose picks the member for one attempt of a request: its key's
// leader when routing is direct and the leader is known and usable,
// otherwise the balancer's pick among the usable members not tried yet
// (among all of them when none is left).
func (c *Cluster) choose(rt route, path string, tried []*member) *member {
	if rt.keyed && rt.leader && c.opts.Routing == RouteDirect {
		if m := c.leaderOf(rt.key); m != nil && m.usable() && !contains(tried, m) {
			return m
		}
	}
	all := c.snapshot()
	var ok []*member
	for pass := 0; pass < 3 && len(ok) == 0; pass++ {
		for _, m := range all {
			// Pass 0: usable, ready, untried; pass 1: usable,
			// untried; pass 2: anything.
			if pass == 2 || (m.usable() && !contains(tried, m) && (pass == 1 || m.ready.Load())) {
				ok = append(ok, m)
			}
		}
	}
	key := rt.key
	if !rt.keyed && key == "" {
		key = path
	}
	return c.bal.pick(ok, key)
}

func contains(ms []*member, m *member) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// leaderOf is the member leading key's group, or nil when not known.
func (c *Cluster) leaderOf(key string) *member {
	r := c.routes.Load()
	if r.ring == nil {
		return nil
	}
	g, err := r.ring.Lookup([]byte(key))
	if err != nil {
		return nil
	}
	return c.memberByID(r.leaders[uint32(g)])
}

// setLeader records that node id leads group g.
func (c *Cluster) setLeader(g uint32, id string) {
	for {
		old := c.routes.Load()
		if old.leaders[g] == id {
			return
		}
		nr := &routes{epoch: old.epoch, ring: old.ring, leaders: make(map[uint32]string, len(old.leaders)+1)}
		for k, v := range old.leaders {
			nr.leaders[k] = v
		}
		nr.leaders[g] = id
		if c.routes.CompareAndSwap(old, nr) {
			return
		}
	}
}

// refreshSoon refreshes the picture in the background, at most one
// refresh at a time and one per 100ms, however many answers asked.
func (c *Cluster) refreshSoon() {
	if time.Since(time.Unix(0, c.lastFresh.Load())) < 100*time.Millisecond || !c.refreshing.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		c.refresh(ctx)
	}()
}

// refresh learns the ring and its leaders (GET /v1/ring?tokens=true)
// and, unless told not to, the members (GET /v1/cluster). A node that
// refuses (an ACL token without operator read) leaves direct routing
// off: every request then goes through the balancer.
func (c *Cluster) refresh(ctx context.Context) {
	defer c.lastFresh.Store(time.Now().UnixNano())
	var ri api.RingInfo
	err := c.c.GetJSON(ctx, "/v1/ring", url.Values{"tokens": {"true"}}, &ri)
	switch {
	case IsCode(err, "forbidden") || IsCode(err, "unauthorized"):
		// Not for this token: answers no longer ask for refreshes
		// (each would be a denial in the audit log).
		c.ringDenied.Store(true)
	case err == nil:
		nr := &routes{epoch: ri.Epoch, leaders: map[uint32]string{}}
		// A node of a release before tokens answers without them: its
		// epoch is kept, so that only a newer one asks again.
		if rg, err := ring.FromState(ri.State()); err == nil {
			nr.ring = rg
		}
		for _, g := range ri.Groups {
			if g.Leader != "" {
				nr.leaders[uint32(g.ID)] = string(g.Leader)
			}
		}
		c.routes.Store(nr)
	}
	if c.opts.NoDiscover {
		return
	}
	ci, err := c.c.Cluster(ctx)
	if err != nil {
		return
	}
	c.adopt(ci)
}

// adopt takes the cluster's membership: members given as endpoints stay,
// learned ones that left go, new ones are added at their advertised
// address, and weights are updated.
func (c *Cluster) adopt(ci api.ClusterInfo) {
	known := map[string]api.ClusterNode{}
	for _, n := range ci.Nodes {
		known[string(n.ID)] = n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var keep []*member
	have := map[string]bool{}
	for _, m := range c.snapshot() {
		id := m.nodeID()
		n, ok := known[id]
		if !m.seed && !ok {
			continue
		}
		if ok {
			m.setWeight(n.Capacity())
		}
		have[id] = true
		keep = append(keep, m)
	}
	for _, n := range ci.Nodes {
		if have[string(n.ID)] || n.HTTPAddr == "" {
			continue
		}
		addr, err := c.baseURL(n.HTTPAddr)
		if err != nil || memberAt(keep, addr) != nil {
			continue
		}
		m := newMember(addr, false, c.opts)
		m.setID(string(n.ID))
		m.setWeight(n.Capacity())
		keep = append(keep, m)
	}
	c.members.Store(&keep)
}

// probeAll probes every member's /readyz at once.
func (c *Cluster) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range c.snapshot() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.probe(ctx, c.probeHC, c.token)
		}()
	}
	wg.Wait()
}

func (c *Cluster) anyAnswered() bool {
	for _, m := range c.snapshot() {
		if m.answered.Load() {
			return true
		}
	}
	return false
}

// maintain probes the members on the health interval and refreshes the
// picture every 10 seconds, until Close.
func (c *Cluster) maintain() {
	defer c.wg.Done()
	interval := c.opts.HealthInterval
	if interval < 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-c.stop
		cancel()
	}()
	last := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.opts.HealthInterval > 0 {
			c.probeAll(ctx)
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			c.refresh(rctx)
			rcancel()
		}
	}
}
