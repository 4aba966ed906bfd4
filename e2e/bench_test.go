package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/chaos"
)

// TestBenchAgainstACluster runs `ringkv bench` as a user would, with a
// fixed number of operations spread over every node, and checks that the
// JSON report accounts for each of them with sane latencies.
func TestBenchAgainstACluster(t *testing.T) {
	c := startCluster(t, 3)
	var eps []string
	for _, p := range c.procs {
		eps = append(eps, p.URL())
	}
	cmd := exec.Command(bin.ringkv, "bench", "--endpoints", strings.Join(eps, ","), "--concurrency", "8",
		"--ops", "600", "--reads", "0.3", "--dist", "zipfian", "--keys", "200", "--json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var r bench.Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if r.All.Ops+r.All.Errors != 600 || r.All.Errors != 0 || r.Writes.Ops+r.Reads.Ops != r.All.Ops {
		t.Fatalf("600 operations asked, report: %+v\n%s", r, out)
	}
	if r.Reads.Ops < 100 || r.Writes.Ops < 300 {
		t.Fatalf("30%% reads asked, got %d reads and %d writes", r.Reads.Ops, r.Writes.Ops)
	}
	if !(0 < r.All.P50 && r.All.P50 <= r.All.P99 && r.All.P99 <= r.All.Max) || r.All.Throughput <= 0 {
		t.Fatalf("latencies out of order: %+v", r.All)
	}
	// Each node's share of the requests is reported; with direct
	// routing every node leading a group receives some.
	var total float64
	for _, n := range r.Nodes {
		total += n.Share
	}
	if len(r.Nodes) != 3 || total < 0.999 || total > 1.001 {
		t.Fatalf("per-node shares %+v: want the 3 nodes, summing to 1", r.Nodes)
	}
	// Through the balancer, as a user reads it.
	out, err = exec.Command(bin.ringkv, "--endpoints", strings.Join(eps, ","), "bench", "--routing", "any",
		"--balancer", "least-outstanding", "--concurrency", "4", "--ops", "90").Output()
	if err != nil {
		t.Fatalf("bench --routing any: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "requests by node (routing any, balancer least-outstanding):") ||
		!strings.Contains(string(out), "node1 ") || !strings.Contains(string(out), "node3 ") {
		t.Fatalf("bench does not show the requests by node:\n%s", out)
	}
	if out, err := exec.Command(bin.ringkv, "--endpoints", eps[0], "bench", "--balancer", "fastest", "--ops", "1").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "unknown balancer") {
		t.Fatalf("bench --balancer fastest: %v\n%s", err, out)
	}
}

// TestBenchCompareAndAsyncOnRealNodes drives async writes through HTTP the
// way the README shows (202 with the Raft headers, wait, min_index on
// another node), then runs `ringkv bench compare` briefly and checks both
// modes ran and the plot was drawn.
func TestBenchCompareAndAsyncOnRealNodes(t *testing.T) {
	c := startCluster(t, 3)
	req, _ := http.NewRequest(http.MethodPut, c.procs[0].URL()+"/v1/kv/async-key?replication=async", strings.NewReader("v1"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	group, index, term := resp.Header.Get("X-Raft-Group"), resp.Header.Get("X-Raft-Index"), resp.Header.Get("X-Raft-Term")
	if resp.StatusCode != http.StatusAccepted || group == "" || index == "" || term == "" {
		t.Fatalf("async put: %d, headers %v", resp.StatusCode, resp.Header)
	}
	resp, err = http.Post(c.procs[1].URL()+"/v1/wait?group="+group+"&index="+index+"&term="+term+"&timeout=5s", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("wait: %d", resp.StatusCode)
	}
	resp, err = http.Get(c.procs[2].URL() + "/v1/kv/async-key?consistency=stale&min_index=" + index)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "v1" {
		t.Fatalf("stale read at min_index on another node: %d %q", resp.StatusCode, body)
	}

	var eps []string
	for _, p := range c.procs {
		eps = append(eps, p.URL())
	}
	plot := filepath.Join(t.TempDir(), "compare.svg")
	out, err := exec.Command(bin.ringkv, "bench", "compare", "--endpoints", strings.Join(eps, ","), "--concurrency", "4",
		"--duration", "400ms", "--rounds", "2", "--plot", plot, "--json").Output()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s", err, out)
	}
	var cmp struct {
		Modes []bench.ModeResult `json:"modes"`
	}
	if err := json.Unmarshal(out, &cmp); err != nil {
		t.Fatalf("bench compare --json: %v\n%s", err, out)
	}
	if len(cmp.Modes) != 2 || cmp.Modes[0].Name != "sync" || cmp.Modes[1].Name != "async" {
		t.Fatalf("modes %+v", cmp.Modes)
	}
	for _, m := range cmp.Modes {
		if m.Rounds != 2 || m.Stats.Ops == 0 || m.Errors != 0 || m.Stats.P50 <= 0 {
			t.Fatalf("mode %s: %+v", m.Name, m)
		}
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "async") || strings.Count(string(svg), "<polyline") != 2 {
		t.Fatalf("plot: %v\n%.300s", err, svg)
	}
}

// TestBenchLoss runs `ringkv bench loss` as a user would, small: per mode,
// a group leader is killed twice, each time after being cut off from its
// followers for a moment. Sync must lose nothing (the command fails
// otherwise); async writes acknowledged by the cut-off leader are lost,
// and reported. The nodes talk through emulated links of 5ms each way
// (--link-latency), which the cut goes through.
func TestBenchLoss(t *testing.T) {
	trackSources()
	out, err := exec.Command(bin.ringkv, "bench", "loss", "--ringkvd", bin.ringkvd, "--kills", "2", "--rate", "100",
		"--before", "500ms", "--cut", "300ms", "--link-latency", "5ms", "--json").Output()
	if err != nil {
		t.Fatalf("bench loss: %v\n%s", err, out)
	}
	var reps []chaos.LossReport
	if err := json.Unmarshal(out, &reps); err != nil || len(reps) != 2 {
		t.Fatalf("bench loss --json: %v\n%s", err, out)
	}
	sync, async := reps[0], reps[1]
	if sync.Replication != "sync" || sync.Acked < 50 || len(sync.Lost) != 0 {
		t.Fatalf("sync: %+v", sync)
	}
	if async.Replication != "async" || async.Acked < 50 || len(async.Lost) == 0 || async.Window <= 0 {
		t.Fatalf("async with its leader cut off then killed lost nothing: %+v", async)
	}
	if sync.LinkLatency != 5*time.Millisecond || async.LinkLatency != 5*time.Millisecond {
		t.Fatalf("link latency in the reports: %v, %v", sync.LinkLatency, async.LinkLatency)
	}
}
