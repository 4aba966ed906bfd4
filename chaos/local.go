package chaos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/links"
)

// Proc is one ringkvd process of a local cluster.
type Proc struct {
	ID       string
	HTTPAddr string
	// RaftAddr is the Raft address the other nodes dial: the node's own,
	// or its link's when the cluster has emulated links.
	RaftAddr string
	// Link, in a cluster with emulated links (LocalOptions.Link), fronts
	// the node's Raft port: every connection another node opens to it
	// passes through it.
	Link *links.Link
	// ClientLink, with LocalOptions.ClientLink, fronts the node's client
	// port for clients that should pay a latency (ClientURL); the
	// harness's own requests (Client) go straight to the node.
	ClientLink *links.Link
	// via maps peers' Raft addresses to the links this node dials them
	// through (LocalOptions.PairLink).
	via     map[string]string
	DataDir string
	LogPath string
	Client  *client.Client

	bin      string
	args     []string
	env      []string
	attached bool // a node this harness did not start and cannot control
	// container, when set, names the Docker container this node runs in;
	// process control goes through Docker.
	container string
	// killCmd and startCmd, when set, control the node (AttachControlled);
	// down records that it was killed and not started since.
	killCmd, startCmd string
	down              bool
	cmd               *exec.Cmd
	exited            chan struct{}
	// https: the node's client port serves TLS (LocalOptions.ClientTLS).
	https bool
}

// URL is the node's HTTP base URL.
func (p *Proc) URL() string {
	if p.https {
		return "https://" + p.HTTPAddr
	}
	return "http://" + p.HTTPAddr
}

// Running reports whether the process is alive (it may be paused). An
// attached node counts as running.
func (p *Proc) Running() bool {
	if p.container != "" {
		return p.containerRunning()
	}
	if p.killCmd != "" {
		return !p.down
	}
	return p.cmd != nil || p.attached
}

// ExitCode reports the exit status of a process this harness started
// that has ended by itself (ok false while it runs, or for containers and
// attached nodes).
func (p *Proc) ExitCode() (code int, ok bool) {
	if p.cmd == nil || p.exited == nil {
		return 0, false
	}
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// errAttached is returned for process control of an attached node.
var errAttached = errors.New("attached node: this harness did not start it and cannot kill, restart or pause it")

// UseBinary makes the next Start run the ringkvd at path: a rolling
// upgrade (or downgrade) of a local node, its data dir kept.
func (p *Proc) UseBinary(path string) { p.bin = path }

// Start starts the process with its fixed arguments.
func (p *Proc) Start() error {
	if p.container != "" {
		if p.containerRunning() {
			return nil
		}
		_, err := docker("start", p.container)
		return err
	}
	if p.startCmd != "" {
		if !p.down {
			return nil
		}
		if err := p.runControl(p.startCmd); err != nil {
			return err
		}
		p.down = false
		return nil
	}
	if p.attached {
		return errAttached
	}
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := p.args
	if len(p.via) > 0 {
		// The routes to its peers' links, as they are now: a node
		// restarted dials through them from its first connection.
		var routes []string
		for peer, addr := range p.via {
			routes = append(routes, peer+"="+addr)
		}
		sort.Strings(routes)
		args = append(append([]string(nil), args...), "--fault-via", strings.Join(routes, ","))
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited
	return nil
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() error {
	if p.container != "" {
		if !p.containerRunning() {
			return nil
		}
		_, err := docker("kill", p.container)
		return err
	}
	if p.killCmd != "" {
		if p.down {
			return nil
		}
		if err := p.runControl(p.killCmd); err != nil {
			return err
		}
		p.down = true
		return nil
	}
	if p.attached {
		return errAttached
	}
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGCONT) // a paused process must die too
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not exit after SIGKILL", p.ID)
	}
	p.cmd = nil
	return nil
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (p *Proc) Pause() error {
	if p.container != "" {
		_, err := docker("pause", p.container)
		return err
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(p.cmd.Process.Pid, 5*time.Second)
}

// Resume continues a paused process.
func (p *Proc) Resume() error {
	if p.container != "" {
		if st, _ := docker("inspect", "-f", "{{.State.Paused}}", p.container); st != "true" {
			return nil
		}
		_, err := docker("unpause", p.container)
		return err
	}
	return p.signal(syscall.SIGCONT)
}

// Reload sends the process SIGHUP: it reloads its certificates.
func (p *Proc) Reload() error { return p.signal(syscall.SIGHUP) }

func (p *Proc) signal(s syscall.Signal) error {
	if p.attached {
		return errAttached
	}
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.ID)
	}
	return p.cmd.Process.Signal(s)
}

// NodeArgs are the ringkvd flags a chaos run uses: snapshots small and
// frequent enough that followers install them during the run, and short
// Raft timeouts so that faults cause elections quickly.
func NodeArgs(groups int) []string {
	return []string{
		"--groups", fmt.Sprint(groups),
		"--snapshot-threshold", "300", "--trailing-logs", "100", "--snapshot-interval", "1s",
		"--heartbeat-timeout", "500ms", "--election-timeout", "500ms", "--leader-lease-timeout", "250ms",
		"--balance-interval", "1s", "--log-level", "warn",
	}
}

// LocalOptions shape a local cluster.
type LocalOptions struct {
	Bin   string // path to ringkvd
	Dir   string // data and logs
	Nodes int
	// Args are added to every node's command line; "{id}" in one becomes
	// the node's id (node1, node2, ...), for per-node files such as
	// certificates.
	Args []string
	// NodeArgs are added to one node's command line, by node id.
	NodeArgs map[string][]string
	// Env is added to every node's environment.
	Env []string
	// ACL starts every node with --acl: the first node's access control is
	// bootstrapped, and the management token (Cluster.Token) is every
	// node's --token and every Proc.Client's token.
	ACL bool
	// ClientTLS, when set, is how the harness's clients speak to nodes
	// whose client ports serve TLS (Args give them --tls-cert and
	// --tls-key).
	ClientTLS *tls.Config
	// Link, when set, puts every node's Raft port behind an emulated
	// link of this shape (package links): each node advertises its
	// link's address, so all traffic between nodes (Raft, forwarding)
	// pays the link's latency each way. Client traffic does not.
	Link *links.Shape
	// ClientLink, when set, puts a link of this shape in front of every
	// node's client port too; nodes advertise it as their HTTP address,
	// so clients that learn the members reach them through it.
	ClientLink *links.Shape
	// PairLink, when set (and Link is not), gives each ordered pair of
	// nodes (by index, in start order) a link of its own: node i dials
	// node j through a link of shape PairLink(i, j), so every pair can
	// be as far apart as two regions are. Nodes advertise their own
	// addresses; each dials its peers through its links (--fault-via).
	PairLink func(from, to int) links.Shape
}

// Cluster is a cluster of ringkvd processes on 127.0.0.1.
type Cluster struct {
	Procs []*Proc
	// containers: the nodes run in Docker containers (AttachContainers).
	containers bool
	// local starts more nodes (the scale nemesis); started counts the
	// nodes started so far. spares are containers it may add.
	local   *LocalOptions
	started int
	spares  []Spare
	// net holds the emulated links (LocalOptions.Link, ClientLink and
	// PairLink).
	net *links.Net
	// Token is the management token of a cluster with access control
	// (LocalOptions.ACL).
	Token string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// StartLocal starts o.Nodes processes (the first bootstraps, the others
// join it) with the fault hook enabled, and waits until all are ready.
func StartLocal(ctx context.Context, o LocalOptions) (*Cluster, error) {
	c := &Cluster{local: &o}
	for i := 0; i < o.Nodes; i++ {
		p, err := c.startNode(ctx, o, c.nextIndex())
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Procs = append(c.Procs, p)
	}
	if err := c.WaitReady(ctx, o.Nodes); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartNode starts one more local node that joins the cluster, and adds
// it to Procs once it answers. It does not wait for replicas to move.
func (c *Cluster) StartNode(ctx context.Context) (*Proc, error) {
	if c.local == nil {
		return nil, errors.New("chaos: only a local cluster starts nodes")
	}
	p, err := c.startNode(ctx, *c.local, c.nextIndex())
	if err != nil {
		return nil, err
	}
	c.Procs = append(c.Procs, p)
	return p, nil
}

// startNode starts node i and waits until it answers. Free ports are found
// by listening and closing, so another process may take one before the
// node binds it: a node that exits before answering is started again on
// fresh ports.
func (c *Cluster) startNode(ctx context.Context, o LocalOptions, i int) (*Proc, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		raftAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		p := &Proc{ID: fmt.Sprintf("node%d", i+1), HTTPAddr: httpAddr, RaftAddr: raftAddr, bin: o.Bin, env: o.Env,
			DataDir: filepath.Join(o.Dir, fmt.Sprintf("node%d", i+1)), LogPath: filepath.Join(o.Dir, fmt.Sprintf("node%d.log", i+1))}
		p.args = []string{"--id", p.ID, "--http-addr", httpAddr, "--raft-addr", raftAddr, "--data-dir", p.DataDir, "--fault-hook"}
		if o.Link != nil {
			if c.net == nil {
				c.net = links.New()
			}
			if p.Link, err = c.net.Front(p.ID, raftAddr, *o.Link); err != nil {
				return nil, err
			}
			p.RaftAddr = p.Link.Addr()
			p.args = append(p.args, "--advertise-raft", p.RaftAddr)
		}
		if o.PairLink != nil && o.Link == nil {
			if err := c.linkPairs(ctx, o, p, i); err != nil {
				return nil, err
			}
		}
		if o.ClientLink != nil {
			if c.net == nil {
				c.net = links.New()
			}
			if p.ClientLink, err = c.net.Front(p.ID+"-http", httpAddr, *o.ClientLink); err != nil {
				return nil, err
			}
			p.args = append(p.args, "--advertise-http", p.ClientLink.Addr())
		}
		for _, a := range o.Args {
			p.args = append(p.args, strings.ReplaceAll(a, "{id}", p.ID))
		}
		p.args = append(p.args, o.NodeArgs[p.ID]...)
		if i > 0 {
			p.args = append(p.args, "--join", c.Procs[0].URL())
		}
		if o.ACL {
			p.args = append(p.args, "--acl")
			if c.Token != "" {
				p.args = append(p.args, "--token", c.Token)
			}
		}
		p.https = o.ClientTLS != nil
		p.Client = c.newClient(p)
		if err := p.Start(); err != nil {
			return nil, err
		}
		exited := p.exited
		err = poll(ctx, 20*time.Millisecond, func() error {
			select {
			case <-exited:
				return nil // stop polling: it is gone
			default:
			}
			alive, _, _ := p.Client.Healthy(ctx)
			if !alive {
				return fmt.Errorf("%s not answering yet", p.ID)
			}
			return nil
		})
		select {
		case <-exited:
			p.cmd = nil
			lastErr = fmt.Errorf("%s exited while starting (see %s)", p.ID, p.LogPath)
			continue
		default:
		}
		if err != nil {
			p.Kill()
			return nil, fmt.Errorf("%s: %w", p.ID, err)
		}
		if o.ACL && c.Token == "" {
			if err := c.bootstrapACL(ctx, p); err != nil {
				p.Kill()
				return nil, err
			}
		}
		return p, nil
	}
	return nil, lastErr
}

// bootstrapACL takes the management token of the cluster p bootstrapped,
// once its layout is there.
func (c *Cluster) bootstrapACL(ctx context.Context, p *Proc) error {
	var tok api.ACLToken
	err := poll(ctx, 50*time.Millisecond, func() error {
		var err error
		tok, err = p.Client.ACLBootstrap(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: acl bootstrap: %w", p.ID, err)
	}
	c.Token = tok.SecretID
	p.Client = c.newClient(p)
	return nil
}

// newClient is a client of node p with the cluster's token and TLS.
func (c *Cluster) newClient(p *Proc) *client.Client {
	opts := []client.Option{client.WithToken(c.Token)}
	if c.local != nil && c.local.ClientTLS != nil {
		opts = append(opts, client.WithTLS(c.local.ClientTLS))
	}
	return client.New(p.URL(), opts...)
}

// Attach builds a Cluster from running nodes at the given HTTP URLs,
// learning each node's id and Raft address from its status. Only faults
// that need no process control (partitions, through nodes started with
// --fault-hook) can be injected into it.
func Attach(ctx context.Context, urls []string) (*Cluster, error) {
	c := &Cluster{}
	for _, u := range urls {
		cl := client.New(u)
		st, err := cl.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("attaching to %s: %w", u, err)
		}
		p := &Proc{ID: st.Node, Client: cl, attached: true}
		for _, m := range st.Members {
			if m.ID == st.Node {
				p.HTTPAddr, p.RaftAddr = m.HTTPAddr, m.RaftAddr
			}
		}
		if p.RaftAddr == "" {
			return nil, fmt.Errorf("attaching to %s: node %s is not in its own member list", u, st.Node)
		}
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

// Stop kills every process this harness started. Containers are left
// running, healed and resumed: the cluster is the user's.
func (c *Cluster) Stop() {
	if c.containers {
		for _, p := range c.Procs {
			if p.Running() {
				p.Resume()
			} else {
				p.Start()
			}
		}
		c.healContainers()
		return
	}
	for _, p := range c.Procs {
		p.Kill()
	}
	if c.net != nil {
		c.net.Close()
	}
}

// WaitReady polls until every running node is ready and its groups have
// voters voters each (at most the cluster's replication factor).
func (c *Cluster) WaitReady(ctx context.Context, voters int) error {
	replication := 0
	return poll(ctx, 50*time.Millisecond, func() error {
		if replication == 0 {
			v, err := c.clusterView(ctx)
			if err != nil {
				return err
			}
			replication = v.Replication
			voters = min(voters, max(replication, 1))
		}
		for _, p := range c.Procs {
			if !p.Running() {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, ready, why := p.Client.Healthy(sctx)
			st, err := p.Client.Status(sctx)
			cancel()
			if !ready {
				return fmt.Errorf("%s: %s", p.ID, why)
			}
			if err != nil {
				return err
			}
			for _, g := range st.Groups {
				if len(g.Voters) != voters {
					return fmt.Errorf("%s: group %d has voters %v", p.ID, g.ID, g.Voters)
				}
			}
			// Joiners vote in the metadata group once caught up (at
			// most 5 voters).
			if want := min(len(st.Members), 5); len(st.Meta.Voters) < want {
				return fmt.Errorf("%s: the metadata group has voters %v, want %d", p.ID, st.Meta.Voters, want)
			}
		}
		return nil
	})
}

// WaitLeadersSpread polls until every data group has a leader and no
// running node leads more than its share (the groups over the nodes,
// rounded up): the leader balancing of a fresh cluster is done.
func (c *Cluster) WaitLeadersSpread(ctx context.Context) error {
	return poll(ctx, 100*time.Millisecond, func() error {
		led := map[string]int{}
		groups := map[uint32]bool{}
		var running int
		for _, p := range c.Procs {
			if !p.Running() {
				continue
			}
			running++
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := p.Client.Status(sctx)
			cancel()
			if err != nil {
				return err
			}
			for _, g := range st.Groups {
				groups[uint32(g.ID)] = groups[uint32(g.ID)] || g.State == "Leader"
				if g.State == "Leader" {
					led[p.ID]++
				}
			}
		}
		share := (len(groups) + running - 1) / max(running, 1)
		for g, ok := range groups {
			if !ok {
				return fmt.Errorf("group %d has no leader", g)
			}
		}
		for id, n := range led {
			if n > share {
				return fmt.Errorf("%s leads %d groups, more than its share of %d", id, n, share)
			}
		}
		return nil
	})
}

// LeaderOf returns the index of the process leading group g, or -1.
func (c *Cluster) LeaderOf(ctx context.Context, g uint32) int {
	for i, p := range c.Procs {
		if !p.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := p.Client.Status(sctx)
		cancel()
		if err != nil {
			continue
		}
		for _, gs := range st.Groups {
			if gs.ID == g && gs.State == "Leader" {
				return i
			}
		}
	}
	return -1
}

// Partition cuts process i's Raft traffic off from every other process, in
// both directions, through each node's fault hook. HTTP keeps working, so
// clients still reach it.
func (c *Cluster) Partition(ctx context.Context, i int) error {
	if c.containers {
		return c.partitionContainers(i)
	}
	var others []string
	for j, p := range c.Procs {
		if j == i {
			continue
		}
		others = append(others, p.RaftAddr)
		if err := setBlock(ctx, p, []string{c.Procs[i].RaftAddr}); err != nil {
			return err
		}
	}
	return setBlock(ctx, c.Procs[i], others)
}

// Heal lifts every partition on running nodes.
func (c *Cluster) Heal(ctx context.Context) error {
	if c.containers {
		return c.healContainers()
	}
	var first error
	for _, p := range c.Procs {
		if p.Running() {
			if err := setBlock(ctx, p, []string{}); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func setBlock(ctx context.Context, p *Proc, addrs []string) error {
	// Through the node's client: with its token and TLS, if any.
	err := p.Client.DoJSON(ctx, http.MethodPost, "/v1/debug/fault", map[string][]string{"block": addrs}, nil)
	if client.IsCode(err, "not_found") {
		return fmt.Errorf("fault hook of %s: %w (started without --fault-hook?)", p.ID, err)
	}
	if err != nil {
		return fmt.Errorf("fault hook of %s: %w", p.ID, err)
	}
	return nil
}

// poll calls cond every interval until it returns nil or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-t.C:
		}
	}
}
