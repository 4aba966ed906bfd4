package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
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

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one ringkvd process.
type proc struct {
	id       string
	httpAddr string
	raftAddr string
	dataDir  string
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	c        *client.Client
}

func (p *proc) url() string { return "http://" + p.httpAddr }

func (p *proc) start(t testing.TB, extra ...string) {
	t.Helper()
	args := append([]string{"--id", p.id, "--http-addr", p.httpAddr, "--raft-addr", p.raftAddr, "--data-dir", p.dataDir,
		"--heartbeat-timeout", "500ms", "--election-timeout", "500ms", "--leader-lease-timeout", "250ms", "--balance-interval", "500ms"}, extra...)
	p.cmd = exec.Command(bin.ringkvd, args...)
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(c *exec.Cmd, f *os.File, done chan struct{}) { c.Wait(); f.Close(); close(done) }(p.cmd, logf, p.exited)
	p.c = client.New(p.url())
}

// kill9 kills the process with SIGKILL: no shutdown, no flush.
func (p *proc) kill9(t testing.TB) {
	t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit after SIGKILL", p.id)
	}
	p.cmd = nil
}

type cluster struct {
	t     *testing.T
	procs []*proc
}

// startCluster starts n real processes: the first bootstraps, the rest join.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	trackSources()
	c := &cluster{t: t}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := &proc{id: fmt.Sprintf("node%d", i+1), httpAddr: freePort(t), raftAddr: freePort(t),
			dataDir: filepath.Join(base, fmt.Sprintf("node%d", i+1)), logPath: filepath.Join(base, fmt.Sprintf("node%d.log", i+1))}
		args := extra
		if i > 0 {
			args = append([]string{"--join", c.procs[0].url()}, extra...)
		}
		p.start(t, args...)
		c.procs = append(c.procs, p)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			p.kill9(t)
		}
		if t.Failed() {
			for _, p := range c.procs {
				b, _ := os.ReadFile(p.logPath)
				lines := strings.Split(string(b), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("last log lines of %s:\n%s", p.id, strings.Join(lines, "\n"))
			}
		}
	})
	c.waitReady(n)
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
// with all live nodes as voters.
func (c *cluster) waitReady(voters int) {
	c.t.Helper()
	eventually(c.t, "cluster ready", 60*time.Second, func() error {
		for _, p := range c.procs {
			if p.cmd == nil {
				continue
			}
			_, ready, why := p.c.Healthy(ctx(c.t, 2*time.Second))
			if !ready {
				return fmt.Errorf("%s: %s", p.id, why)
			}
			st, err := p.c.Status(ctx(c.t, 2*time.Second))
			if err != nil {
				return err
			}
			for _, g := range st.Groups {
				if len(g.Voters) != voters {
					return fmt.Errorf("%s: group %d voters %v", p.id, g.ID, g.Voters)
				}
			}
		}
		return nil
	})
}

// leaderOf returns the index of the process leading group g.
func (c *cluster) leaderOf(g uint32) int {
	c.t.Helper()
	idx := -1
	eventually(c.t, fmt.Sprintf("leader of group %d", g), 30*time.Second, func() error {
		for i, p := range c.procs {
			if p.cmd == nil {
				continue
			}
			st, err := p.c.Status(ctx(c.t, 2*time.Second))
			if err != nil {
				continue
			}
			for _, gs := range st.Groups {
				if gs.ID == g && gs.State == "Leader" {
					idx = i
					return nil
				}
			}
		}
		return fmt.Errorf("no leader")
	})
	return idx
}
