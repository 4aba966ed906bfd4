package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
)

// TestThreeNodes is the core promise: writes through any node, reads back
// everywhere, survives kill -9 of a group leader, and a restarted node
// catches up so that every replica ends with the same data.
func TestThreeNodes(t *testing.T) {
	c := startCluster(t, 3)
	// One deadline per phase, not one context (and cleanup) per operation.
	phase := ctx(t, 3*time.Minute)
	want := map[string]string{}
	groupOf := map[string]uint32{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 1000; i += 16 {
				k, v := fmt.Sprintf("user/%04d", i), fmt.Sprintf("value-%d-%x", i, rand.Uint64())
				p := c.procs[rand.IntN(3)]
				res, err := p.Client.Put(phase, k, []byte(v), client.PutOptions{})
				if err != nil {
					errs <- fmt.Errorf("Put(%q) via %s: %w", k, p.ID, err)
					return
				}
				mu.Lock()
				want[k], groupOf[k] = v, res.Group
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Keys are bytes: ones that are not UTF-8 (or hold a NUL) come back
	// exactly from gets, lists and keys lists.
	bin := []string{"bin/\xff\xfe", "bin/\x00nul", "bin/\xc3\x28", "bin/ok"}
	for _, k := range bin {
		if _, err := c.procs[1].Client.Put(phase, k, []byte("b"+k), client.PutOptions{}); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		want[k] = "b" + k
	}
	keys, err := c.procs[2].Client.Keys(phase, "bin/", client.ListOptions{})
	if sort.Strings(bin); err != nil || strings.Join(keys, "|") != strings.Join(bin, "|") {
		t.Fatalf("Keys(bin/) = %q (%v), want %q", keys, err, bin)
	}
	checkAll := func(procs []*chaos.Proc, consistency string) {
		t.Helper()
		for _, p := range procs {
			for k, v := range want {
				got, err := p.Client.Get(phase, k, consistency)
				if err != nil {
					t.Fatalf("Get(%q) via %s: %v", k, p.ID, err)
				}
				if string(got.Data) != v {
					t.Fatalf("Get(%q) via %s = %q, want %q", k, p.ID, got.Data, v)
				}
			}
		}
	}
	checkAll(c.procs, "linearizable")

	// kill -9 the leader of one group; writes to it resume via survivors.
	const g = 2
	victim := c.leaderOf(g)
	var gkeys []string
	for k, kg := range groupOf {
		if kg == g {
			gkeys = append(gkeys, k)
		}
	}
	if len(gkeys) == 0 {
		t.Fatal("no key landed in group 2")
	}
	if err := c.procs[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	survivor := c.procs[(victim+1)%3]
	eventually(t, "write to the killed leader's group via a survivor", 20*time.Second, func() error {
		_, err := survivor.Client.Put(ctx(t, 3*time.Second), gkeys[0], []byte("after-kill"), client.PutOptions{})
		return err
	})
	t.Logf("group %d accepted writes again %v after kill -9 of its leader %s", g, time.Since(killed).Round(time.Millisecond), c.procs[victim].ID)
	want[gkeys[0]] = "after-kill"
	for i := 0; i < 100; i++ {
		k := fmt.Sprintf("late/%03d", i)
		p := c.procs[(victim+1+i%2)%3]
		if _, err := p.Client.Put(phase, k, []byte(k), client.PutOptions{}); err != nil {
			t.Fatalf("Put(%q) with a node down: %v", k, err)
		}
		want[k] = k
	}

	// Restart it (a node with state ignores its --join) and let it catch up.
	if err := c.procs[victim].Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	if ok, why := chaos.CompareReplicas(ctx(t, 60*time.Second), c.lc); !ok {
		t.Fatalf("replicas differ after the restart: %s", why)
	}
	checkAll(c.procs, "stale")
	c.holds(want)
}

// holds checks that node 1's own replicas hold exactly want (the replicas
// were compared with each other before).
func (c *cluster) holds(want map[string]string) {
	c.t.Helper()
	es, err := c.procs[0].Client.List(ctx(c.t, 20*time.Second), "", client.ListOptions{Consistency: "stale"})
	if err != nil {
		c.t.Fatal(err)
	}
	if len(es) != len(want) {
		c.t.Fatalf("%s holds %d keys, want %d", c.procs[0].ID, len(es), len(want))
	}
	for _, e := range es {
		if want[e.Key] != string(e.Value) {
			c.t.Fatalf("%s: %q = %q, want %q", c.procs[0].ID, e.Key, e.Value, want[e.Key])
		}
	}
}

// TestDefaultsServeOnLocalhost7070 runs ringkvd with no flags, as the README
// tells a newcomer to.
func TestDefaultsServeOnLocalhost7070(t *testing.T) {
	trackSources()
	dir := t.TempDir()
	cmd := exec.Command(bin.ringkvd)
	cmd.Dir = dir
	logf, _ := os.Create(dir + "/log")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	c := client.New("http://127.0.0.1:7070")
	eventually(t, "default node ready", 30*time.Second, func() error {
		if _, ready, why := c.Healthy(ctx(t, time.Second)); !ready {
			return fmt.Errorf("%s", why)
		}
		return nil
	})
	req, _ := http.NewRequest("PUT", "http://localhost:7070/v1/kv/hello", strings.NewReader("world"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT hello: %v %v", err, resp)
	}
	resp.Body.Close()
	v, err := c.Get(ctx(t, 5*time.Second), "hello", "")
	if err != nil || string(v.Data) != "world" {
		t.Fatalf("GET hello = %q, %v; want world", v.Data, err)
	}
	mresp, err := http.Get("http://127.0.0.1:7070/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{"ringkv_raft_state{group=\"1\"}", "ringkv_raft_leader_dispatchLog", "ringkv_http_request_duration_seconds_bucket"} {
		if mresp.StatusCode != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics (status %d) lacks %s", mresp.StatusCode, want)
		}
	}
	if n := metricSum(string(metrics), "ringkv_proposal_writes_total"); n < 1 {
		t.Errorf("/metrics: ringkv_proposal_writes_total sums to %v after a write, want at least 1", n)
	}
	if g := metricSum(string(metrics), "go_gc_gogc_percent"); os.Getenv("GOGC") == "" && g != 400 {
		t.Errorf("/metrics: go_gc_gogc_percent %v, want ringkvd's default GC target 400", g)
	}
	// A new data dir keeps its Raft logs in raft-wal, and records it.
	if _, err := os.Stat(dir + "/data/meta/wal"); err != nil {
		t.Fatalf("no Raft log under ./data: %v", err)
	}
	if b, err := os.ReadFile(dir + "/data/log-store"); err != nil || string(b) != "wal\n" {
		t.Fatalf("./data/log-store: %q, %v; want wal", b, err)
	}
	// A graceful stop exits 0.
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("ringkvd did not stop on SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGINT", code)
	}
}

// TestCLI drives the ringkv binary against a real node.
func TestCLI(t *testing.T) {
	c := startCluster(t, 1)
	addr := c.procs[0].URL()
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bin.ringkv, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String() + errOut.String(), err
	}
	if out, err := run(nil, "--addr", addr, "put", "app/name", "ringkv"); err != nil || !strings.Contains(out, `"raft_index"`) {
		t.Fatalf("put: %v %s", err, out)
	}
	if out, err := run([]string{"RINGKV_ADDR=" + addr}, "get", "app/name"); err != nil || out != "ringkv\n" {
		t.Fatalf("get via RINGKV_ADDR: %v %q", err, out)
	}
	if out, err := run(nil, "--addr", addr, "ls", "app/", "--keys"); err != nil || out != "app/name\n" {
		t.Fatalf("ls: %v %q", err, out)
	}
	out, err := run(nil, "--addr", addr, "get", "nope")
	if err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("get of a missing key: err=%v out=%q, want failure naming not found", err, out)
	}
	if out, err := run(nil, "--addr", addr, "put", "app/name", "x", "--cas", "999"); err == nil || !strings.Contains(out, "cas_failed") {
		t.Fatalf("put with a stale cas: err=%v out=%q", err, out)
	}
	for _, cmd := range [][]string{{"status"}, {"ring"}, {"ring", "lookup", "app/name"}, {"health"}} {
		out, err := run(nil, append([]string{"--addr", addr}, cmd...)...)
		if err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
		if cmd[0] == "status" && !strings.Contains(out, "Leader") {
			t.Fatalf("status shows no leader:\n%s", out)
		}
	}
	// A plan previews a ring change, counting the cluster's one key; a
	// change that cannot apply is refused. Answers carry the ring epoch.
	out, err = run(nil, "--addr", addr, "ring", "plan", "add", "9:2")
	if err != nil || !strings.Contains(out, "plan: add group 9 with weight 2 (ring epoch") || !strings.Contains(out, "of 1 keys") {
		t.Fatalf("ring plan add: %v\n%s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "ring", "plan", "remove", "9"); err == nil || !strings.Contains(out, "bad_request") {
		t.Fatalf("ring plan remove of a group not on the ring: err=%v %s", err, out)
	}
	resp, err := http.Get(addr + "/v1/kv/app/name")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if e := resp.Header.Get("X-Ring-Epoch"); e == "" || e == "0" {
		t.Fatalf("X-Ring-Epoch = %q after the plan, want the ring's epoch", e)
	}
	// Ring changes on a live node: the key keeps its value through each,
	// and the ring ends as each says.
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"ring", "add", "--weight", "2"}, "started: add group 4 with weight 2"},
		{[]string{"ring", "weight", "4", "1"}, "started: set group 4's weight to 1"},
		{[]string{"ring", "remove", "1"}, "started: remove group 1"},
	} {
		out, err := run(nil, append([]string{"--addr", addr}, step.args...)...)
		if err != nil || !strings.Contains(out, step.want) || !strings.Contains(out, "done in") {
			t.Fatalf("%v: %v\n%s", step.args, err, out)
		}
		if got, err := run(nil, "--addr", addr, "get", "app/name"); err != nil || got != "ringkv\n" {
			t.Fatalf("after %v: get app/name = %q %v", step.args, got, err)
		}
	}
	out, err = run(nil, "--addr", addr, "ring")
	if err != nil || !strings.Contains(out, "ring epoch 6") || strings.Contains(out, "\n1 ") {
		t.Fatalf("ring after the changes: %v\n%s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "ring", "remove", "1"); err == nil || !strings.Contains(out, "bad_request") {
		t.Fatalf("removing a retired group: %v %s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "leader", "2", "node1"); err != nil || !strings.Contains(out, "pinned to node1") {
		t.Fatalf("leader 2 node1: %v %s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "leader", "2", "nobody"); err == nil || !strings.Contains(out, "bad_request") {
		t.Fatalf("pinning to a node without a replica: %v %s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "leader", "2", "--unpin"); err != nil {
		t.Fatalf("leader 2 --unpin: %v %s", err, out)
	}
	if out, err := run(nil, "--addr", addr, "del", "app/name"); err != nil {
		t.Fatalf("del: %v %s", err, out)
	}
	if _, err := run(nil, "--addr", "http://127.0.0.1:1", "get", "x"); err == nil {
		t.Fatal("get against a dead address succeeded")
	}
}

// metricSum adds up the samples of a metric in Prometheus' text format,
// with labels or without.
func metricSum(text, name string) float64 {
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		var v string
		if rest, ok := strings.CutPrefix(line, name+"{"); ok {
			_, v, _ = strings.Cut(rest, "} ")
		} else if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v = rest
		}
		f, _ := strconv.ParseFloat(v, 64)
		sum += f
	}
	return sum
}
