package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
)

var bin struct{ ringkvd, ringkv string }

var trackOnce sync.Once

// trackSources stats every Go source and module file of the project. The
// binaries under test are built with an external go build, which the test
// cache cannot see; files a test stats while it runs are part of its cache
// key, so this makes any change to the code re-run these tests. It must run
// inside a test: calls made in TestMain before m.Run are not recorded.
func trackSources() {
	trackOnce.Do(func() { walkSources() })
}

func walkSources() {
	filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "data") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum" {
			os.Stat(path)
		}
		return nil
	})
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringkv-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin.ringkvd = filepath.Join(dir, "ringkvd")
	bin.ringkv = filepath.Join(dir, "ringkv")
	for out, pkg := range map[string]string{bin.ringkvd: "../cmd/ringkvd", bin.ringkv: "../cmd/ringkv"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, ":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// timing makes faults cause elections quickly.
var timing = []string{"--heartbeat-timeout", "500ms", "--election-timeout", "500ms",
	"--leader-lease-timeout", "250ms", "--balance-interval", "500ms"}

// cluster is a local cluster of real ringkvd processes, torn down with the
// test.
type cluster struct {
	t     testing.TB
	lc    *chaos.Cluster
	procs []*chaos.Proc
}

// startCluster starts n real processes: the first bootstraps, the rest join.
func startCluster(t testing.TB, n int, extra ...string) *cluster {
	t.Helper()
	return startClusterWith(t, chaos.LocalOptions{Nodes: n, Args: extra})
}

// startClusterWith starts the cluster o describes (its Dir and the fast
// timing set here; the ringkvd under test unless o.Bin names another).
func startClusterWith(t testing.TB, o chaos.LocalOptions) *cluster {
	t.Helper()
	trackSources()
	// RINGKV_E2E_KEEP=DIR keeps each cluster's data and logs in a new
	// directory under DIR, to read after a failure.
	dir := t.TempDir()
	if keep := os.Getenv("RINGKV_E2E_KEEP"); keep != "" {
		var err error
		if dir, err = os.MkdirTemp(keep, "run-"); err != nil {
			t.Fatal(err)
		}
	}
	if o.Bin == "" {
		o.Bin = bin.ringkvd
	}
	o.Dir, o.Args = dir, append(append([]string{}, timing...), o.Args...)
	lc, err := chaos.StartLocal(ctx(t, 60*time.Second), o)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, lc: lc, procs: lc.Procs}
	t.Cleanup(func() {
		lc.Stop()
		if t.Failed() {
			for _, p := range c.procs {
				b, _ := os.ReadFile(p.LogPath)
				lines := strings.Split(string(b), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("last log lines of %s:\n%s", p.ID, strings.Join(lines, "\n"))
			}
		}
	})
	return c
}

func eventually(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

func ctx(t testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// waitReady waits until every live process is ready and hosts every group
// with voters voters.
func (c *cluster) waitReady(voters int) {
	c.t.Helper()
	if err := c.lc.WaitReady(ctx(c.t, 60*time.Second), voters); err != nil {
		c.t.Fatalf("cluster not ready: %v", err)
	}
}

// leaderOf returns the index of the process leading group g.
func (c *cluster) leaderOf(g uint32) int {
	c.t.Helper()
	idx := -1
	eventually(c.t, fmt.Sprintf("leader of group %d", g), 30*time.Second, func() error {
		if idx = c.lc.LeaderOf(ctx(c.t, 5*time.Second), g); idx < 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return idx
}
