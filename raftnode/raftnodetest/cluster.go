// Package raftnodetest runs in-process ringkv clusters for tests: several
// nodes, each with real TCP for Raft and HTTP on 127.0.0.1, real bbolt files
// under t.TempDir, and helpers that wait for conditions with deadlines.
package raftnodetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/httpapi"
	"github.com/ringkv/ringkv/raftnode"
)

// Options shape a test cluster.
type Options struct {
	Nodes             int
	Groups            int
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Verbose sends node logs to stderr.
	Verbose bool
	// Configure, when set, adjusts each node's configuration last.
	Configure func(*raftnode.Config)
}

// Member is one node of a test cluster.
type Member struct {
	ID       base.NodeID
	Node     *raftnode.Node // nil while killed
	HTTPAddr string
	RaftAddr string
	DataDir  string
	srv      *http.Server
	peerSrv  *http.Server // node-to-node HTTP on the Raft port
	weight   float64
}

// URL is the member's HTTP base URL.
func (m *Member) URL() string { return "http://" + m.HTTPAddr }

// Cluster is an in-process cluster. Its methods fail the test on error.
type Cluster struct {
	t       testing.TB
	opts    Options
	Members []*Member
}

// Start boots node 0, joins the others through it, and waits until every
// node is ready. It registers cleanup with t.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Groups == 0 {
		o.Groups = 3
	}
	c := &Cluster{t: t, opts: o}
	dirs := make([]string, o.Nodes)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	// Cleanups run last-registered first: the nodes stop before their
	// directories are removed.
	t.Cleanup(c.Close)
	for i := 0; i < o.Nodes; i++ {
		m := &Member{ID: base.NodeID(fmt.Sprintf("node%d", i+1)), DataDir: dirs[i]}
		c.Members = append(c.Members, m)
		var join []string
		if i > 0 {
			join = []string{c.Members[0].URL()}
		}
		c.start(m, join)
	}
	c.WaitReady()
	return c
}

func (c *Cluster) config(m *Member, join []string) raftnode.Config {
	cfg := raftnode.DefaultConfig()
	cfg.ID = m.ID
	cfg.HTTPAddr = m.HTTPAddr
	cfg.RaftAddr = m.RaftAddr
	cfg.DataDir = m.DataDir
	cfg.Join = join
	cfg.Groups = c.opts.Groups
	cfg.Weight = m.weight
	cfg.VNodes = 16
	if c.opts.SnapshotThreshold > 0 {
		cfg.SnapshotThreshold = c.opts.SnapshotThreshold
		cfg.SnapshotInterval = 200 * time.Millisecond
	}
	if c.opts.TrailingLogs > 0 {
		cfg.TrailingLogs = c.opts.TrailingLogs
	}
	cfg.Timing.Heartbeat = 500 * time.Millisecond
	cfg.Timing.Election = 500 * time.Millisecond
	cfg.Timing.LeaderLease = 250 * time.Millisecond
	cfg.Timing.ApplyDeadline = 5 * time.Second
	cfg.BalanceInterval = 500 * time.Millisecond
	var w io.Writer = io.Discard
	if c.opts.Verbose {
		w = os.Stderr
	}
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", string(m.ID))
	cfg.OnFatal = func(err error) { c.t.Errorf("node %s: fatal: %v", m.ID, err) }
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	return cfg
}

// Config returns the configuration member i starts (or restarts) with, for
// a test that starts a node itself to see it fail.
func (c *Cluster) Config(i int) raftnode.Config { return c.config(c.Members[i], nil) }

func (c *Cluster) start(m *Member, join []string) {
	c.t.Helper()
	httpAddr := m.HTTPAddr
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// A restarted member reuses its ports; the old ones may take a moment
	// to be released.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", httpAddr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("listen: %v", err)
	}
	m.HTTPAddr = ln.Addr().String()
	if m.RaftAddr == "" {
		m.RaftAddr = "127.0.0.1:0"
	}
	cfg := c.config(m, join)
	var n *raftnode.Node
	for {
		n, err = raftnode.New(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		ln.Close()
		c.t.Fatalf("start %s: %v", m.ID, err)
	}
	m.RaftAddr = n.Mux().Addr().String()
	acfg := httpapi.DefaultConfig()
	acfg.Logger = cfg.Logger
	api, err := httpapi.New(n, acfg)
	if err != nil {
		c.t.Fatal(err)
	}
	m.srv = httpapi.NewServer(m.HTTPAddr, api)
	go m.srv.Serve(ln)
	m.peerSrv = httpapi.NewServer("", api.PeerHandler())
	go m.peerSrv.Serve(n.PeerListener())
	m.Node = n
}

// Close stops every member.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		c.stop(m)
	}
}

func (c *Cluster) stop(m *Member) {
	if m.Node == nil {
		return
	}
	m.srv.Close()
	m.Node.Close()
	m.peerSrv.Close()
	m.Node = nil
}

// Kill stops member i (its files stay).
func (c *Cluster) Kill(i int) { c.stop(c.Members[i]) }

// Restart starts a killed member again from its data dir.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.start(c.Members[i], nil)
}

// Partition cuts member i's Raft port (Raft, forwarding, node-to-node
// HTTP) off from every other member; its client port stays reachable, as
// for a leader cut from its followers while clients can still reach it.
func (c *Cluster) Partition(i int) {
	var peers []string
	for j, m := range c.Members {
		if j != i {
			peers = append(peers, m.RaftAddr)
			if m.Node != nil {
				m.Node.Mux().Block([]string{c.Members[i].RaftAddr})
			}
		}
	}
	c.Members[i].Node.Mux().Block(peers)
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	for _, m := range c.Members {
		if m.Node != nil {
			m.Node.Mux().Block(nil)
		}
	}
}

// Eventually polls cond until it returns nil or the deadline passes.
func (c *Cluster) Eventually(what string, timeout time.Duration, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitReady waits until every live member reports ready.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	c.Eventually("cluster ready", 30*time.Second, func() error {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			if ok, why := m.Node.Ready(); !ok {
				return fmt.Errorf("%s: %s", m.ID, why)
			}
			want := 0
			l := m.Node.Layout()
			for _, g := range l.Groups {
				if slices.Contains(g.Replicas, m.ID) {
					want++
				}
			}
			if len(l.Groups) == 0 {
				want = c.opts.Groups
			}
			// A replica move onto this node may have started its
			// replica before the layout lists it (a test may hold the
			// move there).
			moving := 0
			if l.Move != nil && l.Move.To == m.ID {
				moving = 1
			}
			st := m.Node.Status()
			if len(st.Groups) < want || len(st.Groups) > want+moving {
				return fmt.Errorf("%s hosts %d groups, want %d", m.ID, len(st.Groups), want)
			}
			// Joiners are learners until caught up: ready once every
			// replica the layout lists votes.
			if v, n := len(st.Meta.Voters), min(len(l.Nodes), raftnode.MaxMetaVoters); l.Initialized && v < n {
				return fmt.Errorf("%s: the metadata group has %d voters, want %d", m.ID, v, n)
			}
			for _, gs := range st.Groups {
				g, ok := l.Group(gs.ID)
				if ok && (l.Move == nil || l.Move.Group != gs.ID) && len(gs.Voters) < len(g.Replicas) {
					return fmt.Errorf("%s: group %d has voters %v, the layout replicas %v", m.ID, gs.ID, gs.Voters, g.Replicas)
				}
			}
		}
		return nil
	})
}

// WaitForLeader waits until live members agree on a leader of group g that
// is itself live, and returns its index.
func (c *Cluster) WaitForLeader(g base.GroupID) int {
	c.t.Helper()
	var leader int
	c.Eventually(fmt.Sprintf("leader of group %d", g), 30*time.Second, func() error {
		leader = -1
		for i, m := range c.Members {
			if m.Node == nil || !c.holds(m, g) {
				continue
			}
			gs, ok := groupStatus(m.Node, g)
			if !ok {
				return fmt.Errorf("%s does not host group %d", m.ID, g)
			}
			if gs.State == "Leader" {
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no live leader")
		}
		for _, m := range c.Members {
			if m.Node == nil || !c.holds(m, g) {
				continue
			}
			if gs, _ := groupStatus(m.Node, g); gs.Leader != c.Members[leader].ID {
				return fmt.Errorf("%s sees leader %q", m.ID, gs.Leader)
			}
		}
		return nil
	})
	return leader
}

// WaitForApplied waits until every live member's replica of g has applied
// at least index.
func (c *Cluster) WaitForApplied(g base.GroupID, index uint64) {
	c.t.Helper()
	c.Eventually(fmt.Sprintf("group %d applied %d everywhere", g, index), 30*time.Second, func() error {
		for _, m := range c.Members {
			if m.Node == nil || !c.holds(m, g) {
				continue
			}
			gs, _ := groupStatus(m.Node, g)
			if gs.AppliedIndex < index {
				return fmt.Errorf("%s applied %d", m.ID, gs.AppliedIndex)
			}
		}
		return nil
	})
}

// WaitConverged waits until every live replica of every group has applied
// what its leader has applied.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	var groups []base.GroupID
	for _, m := range c.Members {
		if m.Node != nil {
			for _, g := range m.Node.Layout().Groups {
				groups = append(groups, g.ID)
			}
			break
		}
	}
	for _, g := range groups {
		l := c.WaitForLeader(g)
		gs, _ := groupStatus(c.Members[l].Node, g)
		c.WaitForApplied(g, gs.AppliedIndex)
	}
}

// holds reports whether the layout, as a live member sees it, places a
// replica of g on m.
func (c *Cluster) holds(m *Member, g base.GroupID) bool {
	for _, o := range c.Members {
		if o.Node == nil {
			continue
		}
		gi, ok := o.Node.Layout().Group(g)
		return !ok || slices.Contains(gi.Replicas, m.ID)
	}
	return true
}

// Holders returns the indexes of the members holding a replica of g.
func (c *Cluster) Holders(g base.GroupID) []int {
	var out []int
	for i, m := range c.Members {
		if c.holds(m, g) {
			out = append(out, i)
		}
	}
	return out
}

// Add starts a new member with the given capacity weight (0: 1), joins
// it through member 0, waits until it is ready, and returns its index.
func (c *Cluster) Add(weight float64) int {
	c.t.Helper()
	i := c.StartJoining(weight)
	c.WaitReady()
	return i
}

// StartJoining starts a new member that joins through member 0, and
// returns its index at once, without waiting for it to be ready.
func (c *Cluster) StartJoining(weight float64) int {
	c.t.Helper()
	m := &Member{ID: base.NodeID(fmt.Sprintf("node%d", len(c.Members)+1)), DataDir: c.t.TempDir(), weight: weight}
	c.Members = append(c.Members, m)
	c.start(m, []string{c.Members[0].URL()})
	return len(c.Members) - 1
}

// WaitPlaced waits until replicas are where the placement rule wants them
// and every live member runs exactly the replicas the layout gives it.
func (c *Cluster) WaitPlaced(timeout time.Duration) {
	c.t.Helper()
	c.Eventually("replicas placed", timeout, func() error {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			if ci := m.Node.Cluster(context.Background()); !ci.Balanced {
				return fmt.Errorf("%s: not balanced yet (move %+v)", m.ID, ci.Move)
			}
			l := m.Node.Layout()
			var want, have []base.GroupID
			for _, g := range l.Groups {
				if slices.Contains(g.Replicas, m.ID) {
					want = append(want, g.ID)
				}
			}
			for _, gs := range m.Node.Status().Groups {
				have = append(have, gs.ID)
			}
			slices.Sort(want)
			slices.Sort(have)
			if !slices.Equal(want, have) {
				return fmt.Errorf("%s runs groups %v, layout gives it %v", m.ID, have, want)
			}
		}
		return nil
	})
}

func groupStatus(n *raftnode.Node, g base.GroupID) (raftnode.GroupStatus, bool) {
	for _, gs := range n.Status().Groups {
		if gs.ID == g {
			return gs, true
		}
	}
	return raftnode.GroupStatus{}, false
}

// GroupStatus returns member i's view of group g.
func (c *Cluster) GroupStatus(i int, g base.GroupID) raftnode.GroupStatus {
	gs, _ := groupStatus(c.Members[i].Node, g)
	return gs
}

// Ctx returns a context that ends after d.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
