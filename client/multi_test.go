package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode answers /readyz with its id and every key request with kv;
// it counts the key requests it received.
type fakeNode struct {
	id   string
	srv  *httptest.Server
	hits atomic.Int64
	kv   func(w http.ResponseWriter, r *http.Request)
}

func newFakeNode(t *testing.T, id string, kv func(w http.ResponseWriter, r *http.Request)) *fakeNode {
	f := &fakeNode{id: id, kv: kv}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", id)
		w.Write([]byte(`{"ready":true}`))
	})
	mux.HandleFunc("/v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		w.Header().Set("X-Served-By", id)
		f.kv(w, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"no","code":"forbidden"}`))
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func ok(w http.ResponseWriter, r *http.Request) {
	w.Write([]byte(`{"key":"k","index":1,"group":1,"raft_index":1}`))
}

func refuse(code string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"error":"refused","code":%q}`, code)
	}
}

// cut drops the connection once the request has arrived.
func cut(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func testCluster(t *testing.T, o ClusterOptions, nodes ...*fakeNode) *Cluster {
	t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.srv.URL)
	}
	o.HealthInterval, o.NoDiscover = -1, true
	c, err := NewCluster(context.Background(), eps, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// A write refused before it was proposed goes to another node; a write
// whose answer was lost, or timed out, is never sent again.
func TestClusterRetriesOnlyWhatIsSafe(t *testing.T) {
	ctx := context.Background()
	for _, code := range refusedCodes {
		a, b := newFakeNode(t, "a", refuse(code)), newFakeNode(t, "b", ok)
		c := testCluster(t, ClusterOptions{}, a, b)
		for i := range 4 {
			if _, err := c.Put(ctx, fmt.Sprint("k", i), []byte("v"), PutOptions{}); err != nil {
				t.Fatalf("%s: a write refused by one node failed: %v", code, err)
			}
		}
		if a.hits.Load() == 0 || b.hits.Load() != 4 {
			t.Errorf("%s: refusing node got %d, the other %d; want some and 4", code, a.hits.Load(), b.hits.Load())
		}
	}
	timeout := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGatewayTimeout)
		w.Write([]byte(`{"error":"timed out","code":"timeout"}`))
	}
	for name, h := range map[string]http.HandlerFunc{"cut": cut, "504": timeout} {
		a, b := newFakeNode(t, "a", h), newFakeNode(t, "b", h)
		c := testCluster(t, ClusterOptions{}, a, b)
		_, err := c.Put(ctx, "k", []byte("v"), PutOptions{})
		if !errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: write answered %v, want ErrOutcomeUnknown", name, err)
		}
		if n := a.hits.Load() + b.hits.Load(); n != 1 {
			t.Errorf("%s: the write was sent %d times, want once", name, n)
		}
	}
	// A read whose connection was cut is read again elsewhere.
	a, b := newFakeNode(t, "a", cut), newFakeNode(t, "b", ok)
	c := testCluster(t, ClusterOptions{}, a, b)
	for range 4 {
		if _, err := c.Get(ctx, "k", "stale"); err != nil {
			t.Fatalf("a read cut by one node failed: %v", err)
		}
	}
	// A node that refuses connections costs nothing: the write was
	// never sent, so it goes to the other node.
	dead := newFakeNode(t, "dead", ok)
	b = newFakeNode(t, "b", ok)
	c = testCluster(t, ClusterOptions{}, dead, b)
	dead.srv.Close()
	for i := range 4 {
		if _, err := c.Put(ctx, fmt.Sprint("k", i), []byte("v"), PutOptions{}); err != nil {
			t.Fatalf("write with one node refusing connections: %v", err)
		}
	}
	if st := c.Stats(); st[0].Breaker != "open" || st[0].Failures != 1 || b.hits.Load() != 4 {
		t.Errorf("dead node: %+v, the other took %d writes; want the breaker open after one failure, 4", st[0], b.hits.Load())
	}
}

func TestNewClusterFailsWhenNoEndpointAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := NewCluster(ctx, []string{addr}, ClusterOptions{}); err == nil {
		t.Fatal("NewCluster succeeded with no node answering")
	}
	for _, o := range []ClusterOptions{{Balancer: "random"}, {Routing: "sideways"}} {
		if _, err := NewCluster(ctx, []string{addr}, o); err == nil {
			t.Errorf("NewCluster accepted %+v", o)
		}
	}
}

func members(n int) []*member {
	var ms []*member
	for i := range n {
		m := newMember(fmt.Sprintf("http://n%d", i), true, ClusterOptions{BreakerFailures: 1, BreakerOpen: time.Second})
		m.setID(fmt.Sprintf("n%d", i))
		ms = append(ms, m)
	}
	return ms
}

func TestWeightedFollowsWeightsEvenly(t *testing.T) {
	ms := members(3)
	ms[2].setWeight(3)
	b := &weighted{}
	got := map[string]int{}
	seq := ""
	for range 10 {
		m := b.pick(ms, "")
		got[m.nodeID()]++
		seq += m.nodeID()[1:]
	}
	if got["n0"] != 2 || got["n1"] != 2 || got["n2"] != 6 {
		t.Errorf("weights 1, 1, 3 over 10 picks gave %v", got)
	}
	// Smooth: the heavy node never takes more than two in a row.
	for i := 0; i+2 < len(seq); i++ {
		if seq[i] == '2' && seq[i+1] == '2' && seq[i+2] == '2' {
			t.Errorf("picks %s: three in a row", seq)
		}
	}
}

func TestKeyHashMovesOnlyTheKeysOfAMemberThatGoes(t *testing.T) {
	ms := members(4)
	before := map[string]*member{}
	for i := range 1000 {
		k := fmt.Sprint("key", i)
		before[k] = keyHash{}.pick(ms, k)
	}
	rest := ms[:3]
	moved := 0
	for k, m := range before {
		now := keyHash{}.pick(rest, k)
		if m != ms[3] && now != m {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of the members that stayed moved", moved)
	}
	count := map[*member]int{}
	for _, m := range before {
		count[m]++
	}
	for _, m := range ms {
		if count[m] < 150 {
			t.Errorf("member %s holds %d of 1000 keys", m.nodeID(), count[m])
		}
	}
}

func TestLeastOutstandingTakesTheIdlest(t *testing.T) {
	ms := members(3)
	ms[0].outstanding.Store(5)
	ms[1].outstanding.Store(1)
	ms[2].outstanding.Store(3)
	for range 20 {
		if m := (leastOutstanding{}).pick(ms, ""); m != ms[1] {
			t.Fatalf("picked %s with %d in flight", m.nodeID(), m.outstanding.Load())
		}
	}
}

func TestLatencyAverageDecays(t *testing.T) {
	var l latency
	t0 := time.Now()
	l.observe(100*time.Millisecond, t0)
	l.observe(time.Millisecond, t0.Add(time.Millisecond))
	if v := l.at(t0.Add(time.Millisecond)); v < float64(90*time.Millisecond) {
		t.Errorf("a fast answer right after a slow one dropped the average to %v", time.Duration(v))
	}
	if v := l.at(t0.Add(20 * time.Second)); v > float64(time.Millisecond) {
		t.Errorf("20 s without answers left the average at %v", time.Duration(v))
	}
	l.observe(300*time.Millisecond, t0.Add(21*time.Second))
	if v := l.at(t0.Add(21 * time.Second)); v != float64(300*time.Millisecond) {
		t.Errorf("a slower answer set the average to %v, want the peak", time.Duration(v))
	}
}

// A token that may not read the ring costs one denied request, not one
// per answer: the client balances and the nodes forward.
func TestClusterWithoutRingAccessAsksOnce(t *testing.T) {
	var ringAsks atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Served-By", "a") })
	mux.HandleFunc("/v1/ring", func(w http.ResponseWriter, r *http.Request) {
		ringAsks.Add(1)
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"no","code":"forbidden"}`))
	})
	mux.HandleFunc("/v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Ring-Epoch", "7")
		ok(w, r)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := NewCluster(context.Background(), []string{srv.URL}, ClusterOptions{HealthInterval: -1, NoDiscover: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		if _, err := c.Put(context.Background(), fmt.Sprint("k", i), []byte("v"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		c.lastFresh.Store(0) // the once-per-100ms bound must not be what stops the asking
	}
	if n := ringAsks.Load(); n != 1 {
		t.Errorf("the ring was asked for %d times; want once", n)
	}
}

// A stream through the cluster (a backup) is bounded by its context, not
// by the request timeout: a transfer longer than it comes whole.
func TestClusterStreamOutlivesTheRequestTimeout(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Served-By", "a") })
	mux.HandleFunc("/v1/backup", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
			time.Sleep(150 * time.Millisecond) // a slow transfer, emulated
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := NewCluster(context.Background(), []string{srv.URL}, ClusterOptions{HealthInterval: -1, NoDiscover: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Client().Stream(context.Background(), http.MethodGet, "/v1/backup", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "part0;part1;part2;" {
		t.Fatalf("stream: %q, %v", b, err)
	}
	// An ordinary request is bounded by the timeout.
	if err := c.Client().GetJSON(context.Background(), "/v1/backup", nil, &struct{}{}); err == nil {
		t.Fatal("a request longer than the timeout succeeded")
	}
}
