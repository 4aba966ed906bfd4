package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/bench"
)

// nodesUnder lists the pids of running processes whose command line
// mentions dir (the ringkvd processes of a run using it).
func nodesUnder(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		// The program is ringkvd (ringkv mentions it in --ringkvd). A
		// zombie has an empty command line: only running ones count.
		argv0, _, _ := bytes.Cut(b, []byte{0})
		if filepath.Base(string(argv0)) != "ringkvd" {
			continue
		}
		pids = append(pids, e.Name())
	}
	return pids
}

// TestBenchCompareOverLinks runs `ringkv bench compare --target local
// --link-latency 10ms` as a user would: 3 nodes whose Raft traffic crosses
// links of 10ms each way. A sync write waits for a follower: at least the
// 20ms round trip. An async write is acknowledged at the leader's append,
// without it. The nodes and the links are gone when the command ends.
func TestBenchCompareOverLinks(t *testing.T) {
	trackSources()
	dir := t.TempDir()
	cmd := exec.Command(bin.ringkv, "bench", "compare", "--target", "local", "--ringkvd", bin.ringkvd, "--dir", dir,
		"--link-latency", "10ms", "--concurrency", "1", "--duration", "1s", "--rounds", "1", "--json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	var cmp struct {
		Link struct {
			Latency time.Duration `json:"latency_ns"`
		} `json:"link"`
		Modes []bench.ModeResult `json:"modes"`
	}
	if err := json.Unmarshal(out, &cmp); err != nil || len(cmp.Modes) != 2 {
		t.Fatalf("bench compare --json: %v\n%s", err, out)
	}
	sync, async := cmp.Modes[0].Stats, cmp.Modes[1].Stats
	if cmp.Link.Latency != 10*time.Millisecond || sync.Errors+async.Errors != 0 || sync.Ops == 0 || async.Ops == 0 {
		t.Fatalf("report: %s", out)
	}
	// A lower bound only: a busy machine makes writes slower, never faster.
	if sync.P50 < 20*time.Millisecond {
		t.Fatalf("sync p50 %v across 10ms links: want at least the 20ms round trip to a follower", sync.P50)
	}
	if async.P50 >= sync.P50 {
		t.Fatalf("async p50 %v not below sync's %v: async should not wait for a follower", async.P50, sync.P50)
	}
	if pids := nodesUnder(t, dir); len(pids) != 0 {
		t.Fatalf("ringkvd processes %v left after bench compare ended", pids)
	}
}

// TestBenchCompareSweepsLinkLatency sweeps two link latencies on the same
// nodes and draws them: sync's latency follows the links, async's does
// not. The clients are 5ms away from the nodes (--client-latency), which
// every write pays twice, in both modes.
func TestBenchCompareSweepsLinkLatency(t *testing.T) {
	trackSources()
	plot := filepath.Join(t.TempDir(), "sweep.svg")
	out, err := exec.Command(bin.ringkv, "bench", "compare", "--target", "local", "--ringkvd", bin.ringkvd,
		"--link-latency", "0,15ms", "--client-latency", "5ms", "--concurrency", "2", "--duration", "700ms", "--rounds", "1", "--plot", plot, "--json").Output()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s", err, out)
	}
	var sw struct {
		Sweep []bench.SweepPoint `json:"sweep"`
	}
	if err := json.Unmarshal(out, &sw); err != nil || len(sw.Sweep) != 2 {
		t.Fatalf("bench compare --json: %v\n%s", err, out)
	}
	if sw.Sweep[0].LinkLatency != 0 || sw.Sweep[1].LinkLatency != 15*time.Millisecond {
		t.Fatalf("sweep points %v, %v", sw.Sweep[0].LinkLatency, sw.Sweep[1].LinkLatency)
	}
	for _, p := range sw.Sweep {
		if len(p.Modes) != 2 || p.Modes[0].Name != "sync" || p.Modes[1].Name != "async" {
			t.Fatalf("modes at %v: %+v", p.LinkLatency, p.Modes)
		}
		for _, m := range p.Modes {
			if m.Stats.Ops == 0 || m.Stats.Errors != 0 {
				t.Fatalf("%s at %v: %+v", m.Name, p.LinkLatency, m.Stats)
			}
			if m.Stats.P50 < 10*time.Millisecond {
				t.Fatalf("%s p50 %v at link %v with clients 5ms away: want at least their 10ms round trip", m.Name, m.Stats.P50, p.LinkLatency)
			}
		}
	}
	if s := sw.Sweep[1].Modes[0].Stats.P50; s < 40*time.Millisecond {
		t.Fatalf("sync p50 %v across 15ms links, clients 5ms away: want at least 30ms + 10ms of round trips", s)
	}
	if a, s := sw.Sweep[1].Modes[1].Stats.P50, sw.Sweep[1].Modes[0].Stats.P50; a >= s {
		t.Fatalf("async p50 %v not below sync's %v across 15ms links", a, s)
	}
	svg, err := os.ReadFile(plot)
	// Per mode: p50, p99 and throughput lines.
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || strings.Count(string(svg), "<polyline") != 6 || !strings.Contains(string(svg), "one-way link latency") {
		t.Fatalf("plot: %v\n%.400s", err, svg)
	}
}

// TestBenchCompareEndedLeavesNothing ends a run with links while it
// measures, each way a user or the system ends one: Ctrl-C, SIGKILL (the
// nodes die with their parent), and a reader that went away (`| head`,
// which without care kills the run by SIGPIPE before its cleanup). In
// every case no ringkvd is left, and in those the run survives to see,
// nor is its temporary data dir.
func TestBenchCompareEndedLeavesNothing(t *testing.T) {
	trackSources()
	for _, end := range []string{"interrupt", "kill", "stdout closed"} {
		t.Run(end, func(t *testing.T) {
			tmp := t.TempDir()
			duration := "2m"
			if end == "stdout closed" {
				duration = "3s" // the table is written at the end
			}
			cmd := exec.Command(bin.ringkv, "bench", "compare", "--target", "local", "--ringkvd", bin.ringkvd,
				"--link-latency", "5ms", "--concurrency", "4", "--duration", duration, "--rounds", "1")
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if end == "stdout closed" {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				r.Close() // nobody will read
				cmd.Stdout = w
				defer w.Close()
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			measuring := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stderr)
				said := false
				for sc.Scan() {
					if !said && strings.Contains(sc.Text(), "bench compare: 3 local nodes") {
						said = true
						close(measuring)
					}
				}
				done <- cmd.Wait()
			}()
			select {
			case <-measuring:
			case err := <-done:
				t.Fatalf("bench compare ended before measuring: %v", err)
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
				t.Fatal("the local nodes never started")
			}
			if pids := nodesUnder(t, tmp); len(pids) != 3 {
				t.Fatalf("%d ringkvd processes running under %s while measuring, want 3", len(pids), tmp)
			}
			switch end {
			case "interrupt":
				cmd.Process.Signal(syscall.SIGINT)
			case "kill":
				cmd.Process.Kill()
			}
			var exit error
			select {
			case exit = <-done:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatalf("bench compare did not end within a minute (%s)", end)
			}
			if end == "stdout closed" {
				var ee *exec.ExitError
				if !errors.As(exit, &ee) || ee.ExitCode() != 141 {
					t.Errorf("bench compare with its reader gone ended with %v; want exit status 141, as for SIGPIPE", exit)
				}
			}
			// A node killed with its parent is reaped by init: poll.
			eventually(t, "no ringkvd left", 30*time.Second, func() error {
				if pids := nodesUnder(t, tmp); len(pids) != 0 {
					return fmt.Errorf("ringkvd processes %v left after %s", pids, end)
				}
				return nil
			})
			if end != "kill" {
				left, _ := os.ReadDir(tmp)
				if len(left) != 0 {
					t.Errorf("%s left %v in its temporary dir", end, left)
				}
			}
		})
	}
}

// TestBenchCompareRegions puts two nodes in one region and the third in
// another (--regions us-east,us-east,eu-west: 2ms and 35ms each way, from
// published round trips). Each pair of nodes has its own link, so a
// group led in us-east commits with its near follower while the group led
// in eu-west waits for the ocean: sync writes are fast for most keys and
// pay the far round trip for that group's.
func TestBenchCompareRegions(t *testing.T) {
	trackSources()
	out, err := exec.Command(bin.ringkv, "bench", "compare", "--target", "local", "--ringkvd", bin.ringkvd,
		"--regions", "us-east,us-east,eu-west", "--concurrency", "1", "--duration", "2s", "--rounds", "1", "--json").Output()
	if err != nil {
		t.Fatalf("bench compare --regions: %v\n%s", err, out)
	}
	var cmp struct {
		Modes []bench.ModeResult `json:"modes"`
	}
	if err := json.Unmarshal(out, &cmp); err != nil || len(cmp.Modes) != 2 {
		t.Fatalf("bench compare --json: %v\n%s", err, out)
	}
	sync := cmp.Modes[0].Stats
	if sync.Errors != 0 || sync.Ops == 0 {
		t.Fatalf("sync: %+v", sync)
	}
	// The writes of the group led in eu-west pay its 70ms round trip to
	// us-east (a lower bound: never faster).
	if sync.Max < 70*time.Millisecond {
		t.Fatalf("sync max %v: no write paid the 70ms round trip between eu-west and us-east", sync.Max)
	}
	// Most writes go to the groups led in us-east, whose near follower
	// answers in a few ms: their median is far below the far round trip
	// (links of one shape for every pair would put it above).
	if sync.P50*4 > sync.Max {
		t.Fatalf("sync p50 %v against max %v: the near pair's writes did not commit with the near follower", sync.P50, sync.Max)
	}
}
