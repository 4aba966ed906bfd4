package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
)

// newCluster is a cluster client of c's nodes (or of endpoints).
func newCluster(t *testing.T, endpoints []string, o client.ClusterOptions) *client.Cluster {
	t.Helper()
	cc, err := client.NewCluster(ctx(t, 30*time.Second), endpoints, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	return cc
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.HTTPAddr)
	}
	return out
}

// requestsByNode is how many requests the client sent to each node.
func requestsByNode(cc *client.Cluster) map[string]uint64 {
	out := map[string]uint64{}
	for _, s := range cc.Stats() {
		out[s.ID] += s.Requests
	}
	return out
}

func diff(after, before map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// TestClusterClientRoutesAndBalances checks, on three real nodes, what
// each routing mode and balancer of client.Cluster does: direct routing
// sends every write to the node that serves it (no forwarding hop);
// weighted round-robin follows the nodes' weights; key-hash sends a key
// to one node; a killed node receives nothing once its breaker opens.
func TestClusterClientRoutesAndBalances(t *testing.T) {
	c := startClusterWith(t, chaos.LocalOptions{Nodes: 3, Args: []string{"--groups", "4"},
		NodeArgs: map[string][]string{"node3": {"--weight", "3"}}})
	c.waitReady(3)
	cx := ctx(t, 3*time.Minute)
	// The leaders spread over the nodes (by weight) once they are ready.
	eventually(t, "leaders on two nodes or more", 30*time.Second, func() error {
		ri, err := c.procs[0].Client.Ring(cx)
		if err != nil {
			return err
		}
		leaders := map[string]bool{}
		for _, g := range ri.Groups {
			leaders[string(g.Leader)] = true
		}
		if len(leaders) < 2 || leaders[""] {
			return fmt.Errorf("leaders %v", leaders)
		}
		return nil
	})

	t.Run("direct", func(t *testing.T) {
		cc := newCluster(t, c.endpoints(), client.ClusterOptions{})
		// The client's picture is fresh once a write per group has
		// taught it nothing new; learn it first.
		for i := range 40 {
			if _, err := cc.Put(cx, fmt.Sprintf("warm/%d", i), []byte("v"), client.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		before := requestsByNode(cc)
		served := map[string]uint64{}
		const n = 300
		for i := range n {
			res, err := cc.Put(cx, fmt.Sprintf("direct/%d", i), []byte("v"), client.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			served[res.ServedBy]++
		}
		sent := diff(requestsByNode(cc), before)
		// A leadership moved by the balancer meanwhile costs a
		// forwarded write or two, until the answer teaches the
		// client the new leader.
		fwd := forwarded(sent, served)
		t.Logf("direct: sent %v, served by %v: at least %d forwarded", sent, served, fwd)
		if fwd > n/20 {
			t.Errorf("direct routing: at least %d of %d writes were forwarded (sent %v, served by %v)", fwd, n, sent, served)
		}
		if len(served) < 2 {
			t.Errorf("every write served by one node (%v): leaders are not spread or routing is not per group", served)
		}
		// The same writes through round-robin: most are forwarded.
		any := newCluster(t, c.endpoints(), client.ClusterOptions{Routing: client.RouteAny})
		before = requestsByNode(any)
		served = map[string]uint64{}
		for i := range n {
			res, err := any.Put(cx, fmt.Sprintf("any/%d", i), []byte("v"), client.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			served[res.ServedBy]++
		}
		sent = diff(requestsByNode(any), before)
		t.Logf("any: sent %v, served by %v: at least %d forwarded", sent, served, forwarded(sent, served))
		if f := forwarded(sent, served); f < n/3 {
			t.Errorf("round-robin: only %d of %d writes forwarded; the check cannot tell routing modes apart", f, n)
		}
		for _, p := range c.procs {
			if s := sent[p.ID]; s < n/3-1 || s > n/3+1 {
				t.Errorf("round-robin sent %d of %d requests to %s", s, n, p.ID)
			}
		}
	})

	t.Run("weighted", func(t *testing.T) {
		cc := newCluster(t, c.endpoints(), client.ClusterOptions{Balancer: client.BalanceWeighted})
		before := requestsByNode(cc)
		const n = 250
		for i := range n {
			if _, err := cc.Get(cx, fmt.Sprintf("direct/%d", i), "stale"); err != nil && !client.IsCode(err, "not_found") {
				t.Fatal(err)
			}
		}
		sent := diff(requestsByNode(cc), before)
		t.Logf("weighted 1:1:3: sent %v", sent)
		// Weights 1, 1, 3: node3 gets 3/5 of the reads.
		if sent["node3"] < 3*n/5-2 || sent["node3"] > 3*n/5+2 || sent["node1"] < n/5-2 || sent["node2"] < n/5-2 {
			t.Errorf("weighted round-robin over weights 1, 1, 3 sent %v of %d", sent, n)
		}
	})

	t.Run("key-hash", func(t *testing.T) {
		cc := newCluster(t, c.endpoints(), client.ClusterOptions{Balancer: client.BalanceKeyHash})
		nodes := map[string]map[string]bool{} // key -> nodes that served it
		for round := range 5 {
			for i := range 30 {
				k := fmt.Sprintf("direct/%d", i)
				v, err := cc.Get(cx, k, "stale")
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if nodes[k] == nil {
					nodes[k] = map[string]bool{}
				}
				nodes[k][v.ServedBy] = true
			}
		}
		spread := map[string]bool{}
		for k, by := range nodes {
			if len(by) != 1 {
				t.Errorf("key %s served by %d nodes under key-hash: %v", k, len(by), by)
			}
			for id := range by {
				spread[id] = true
			}
		}
		if len(spread) < 2 {
			t.Errorf("30 keys all on one node (%v): key-hash does not spread keys", spread)
		}
	})

	t.Run("dead node", func(t *testing.T) {
		cc := newCluster(t, c.endpoints(), client.ClusterOptions{BreakerOpen: time.Hour})
		if err := c.procs[1].Kill(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := c.procs[1].Start(); err != nil {
				t.Error(err)
			}
		}()
		before := requestsByNode(cc)
		for i := range 200 {
			if _, err := cc.Get(cx, fmt.Sprintf("direct/%d", i%50), "stale"); err != nil {
				t.Fatalf("read %d with a node down: %v", i, err)
			}
		}
		sent := diff(requestsByNode(cc), before)
		t.Logf("with node2 killed: sent %v", sent)
		if sent["node2"] > 1 {
			t.Errorf("the dead node was sent %d requests; its breaker should have stopped all but one", sent["node2"])
		}
		for _, s := range cc.Stats() {
			if s.ID == "node2" && s.Breaker != "open" {
				t.Errorf("node2's breaker is %s after its death", s.Breaker)
			}
		}
	})
}

// TestClusterClientLeastResponseTime puts one node behind a proxy that
// delays every answer: least-response-time sends it far fewer requests
// than round-robin does, in the same run.
func TestClusterClientLeastResponseTime(t *testing.T) {
	c := startCluster(t, 3)
	c.waitReady(3)
	cx := ctx(t, 2*time.Minute)
	slow := slowProxy(t, c.procs[0].HTTPAddr, 50*time.Millisecond)
	endpoints := []string{slow, c.procs[1].HTTPAddr, c.procs[2].HTTPAddr}
	share := func(balancer string) float64 {
		cc := newCluster(t, endpoints, client.ClusterOptions{Balancer: balancer, NoDiscover: true})
		before := requestsByNode(cc)
		const workers, each = 8, 60
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if _, err := cc.Get(cx, fmt.Sprintf("lrt/%d/%d", w, i), "stale"); err != nil && !client.IsCode(err, "not_found") {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sent := diff(requestsByNode(cc), before)
		t.Logf("%s: sent %v", balancer, sent)
		return float64(sent["node1"]) / float64(workers*each)
	}
	rr, lrt := share(client.BalanceRoundRobin), share(client.BalanceLeastResponseTime)
	t.Logf("the slow node's share: round-robin %.3f, least-response-time %.3f", rr, lrt)
	if lrt > rr/2 {
		t.Errorf("least-response-time sent the slow node %.3f of the reads, round-robin %.3f: want under half", lrt, rr)
	}
}

// TestClusterClientNeverResendsAWriteWhoseOutcomeIsUnknown pauses the
// leader a write goes to: the write times out, the client says the
// outcome is unknown, and no other node was sent it.
func TestClusterClientNeverResendsAWriteWhoseOutcomeIsUnknown(t *testing.T) {
	c := startCluster(t, 3)
	c.waitReady(3)
	// A fresh cluster moves leaders to spread them: the leader that
	// served v1 must still lead when v2 is sent.
	if err := c.lc.WaitLeadersSpread(ctx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	cc := newCluster(t, c.endpoints(), client.ClusterOptions{Timeout: 2 * time.Second, HealthInterval: -1})
	cx := ctx(t, time.Minute)
	res, err := cc.Put(cx, "unknown", []byte("v1"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var leader *chaos.Proc
	for _, p := range c.procs {
		if p.ID == res.ServedBy {
			leader = p
		}
	}
	if err := leader.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			leader.Resume()
		}
	}()
	before := requestsByNode(cc)
	_, err = cc.Put(cx, "unknown", []byte("v2"), client.PutOptions{})
	if !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("a write to a paused leader answered %v; want ErrOutcomeUnknown", err)
	}
	// Pause returns once every thread of the node has stopped, so the
	// node cannot have refused the write: one send, which timed out.
	sent := diff(requestsByNode(cc), before)
	if sent[leader.ID] != 1 || sent[leader.ID] != sum(sent) {
		t.Errorf("the write was sent %v; want once, to the paused leader %s only", sent, leader.ID)
	}
	resumed = true
	if err := leader.Resume(); err != nil {
		t.Fatal(err)
	}
	// Once the node answers again the client works on.
	eventually(t, "a write after the pause", 30*time.Second, func() error {
		_, err := cc.Put(cx, "unknown", []byte("v3"), client.PutOptions{})
		return err
	})
}

// forwarded is a lower bound on the writes a node received but did not
// serve: every such write adds one to sent at one node and one to served
// at another.
func forwarded(sent, served map[string]uint64) int {
	f := 0
	for id, s := range sent {
		if s > served[id] {
			f += int(s - served[id])
		}
	}
	return f
}

func sum(m map[string]uint64) uint64 {
	var s uint64
	for _, v := range m {
		s += v
	}
	return s
}

// slowProxy forwards TCP connections to target, holding every chunk of
// the answers back for delay; it returns its address.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer down.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					io.Copy(up, down)
					up.(*net.TCPConn).CloseWrite()
				}()
				buf := make([]byte, 64<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						time.Sleep(delay) // the emulated slowness, not a wait
						if _, werr := down.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return strings.TrimPrefix(ln.Addr().String(), "tcp://")
}

// TestCLIEndpoints uses `ringkv --endpoints` as a user would: with the
// first node dead, a put and a get through the list work, while --addr of
// the dead node fails.
func TestCLIEndpoints(t *testing.T) {
	c := startCluster(t, 3)
	c.waitReady(3)
	eps := strings.Join(c.endpoints(), ",")
	if err := c.procs[0].Kill(); err != nil {
		t.Fatal(err)
	}
	// The surviving two elect leaders for the groups node1 led.
	eventually(t, "a put through --endpoints with node1 dead", 30*time.Second, func() error {
		out, err := exec.Command(bin.ringkv, "--endpoints", eps, "put", "cli/k", "v1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	out, err := exec.Command(bin.ringkv, "--endpoints", eps, "get", "cli/k").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "v1" {
		t.Fatalf("get through --endpoints: %v %q", err, out)
	}
	if out, err := exec.Command(bin.ringkv, "--addr", c.procs[0].URL(), "--timeout", "2s", "get", "cli/k").CombinedOutput(); err == nil {
		t.Fatalf("get through the dead node's --addr succeeded: %s", out)
	}
	env := append(os.Environ(), "RINGKV_ENDPOINTS="+eps)
	cmd := exec.Command(bin.ringkv, "get", "cli/k")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "v1" {
		t.Fatalf("get with RINGKV_ENDPOINTS: %v %q", err, out)
	}
}
