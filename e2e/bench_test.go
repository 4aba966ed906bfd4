package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/bench"
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
}
