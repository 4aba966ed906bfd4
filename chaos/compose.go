package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/ringkv/ringkv/client"
)

// Containers: a Cluster whose nodes run in Docker containers (the
// docker-compose cluster). Faults go through Docker and the kernel, since a
// scratch image holds no tools: docker kill and start, docker pause and
// unpause, and partitions as iptables rules entered in a container's
// network namespace from the host (nsenter), dropping Raft traffic only, so
// clients still reach a node cut from its peers.

// raftPort is the Raft port inside the containers.
const raftPort = "7071"

// AttachContainers builds a Cluster from running containers: urls[i] is
// how this host reaches container names[i]'s HTTP API.
func AttachContainers(ctx context.Context, urls, names []string) (*Cluster, error) {
	if len(urls) != len(names) {
		return nil, fmt.Errorf("chaos: %d endpoints for %d containers", len(urls), len(names))
	}
	c := &Cluster{containers: true}
	for i, u := range urls {
		cl := client.New(u)
		st, err := cl.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("attaching to %s (%s): %w", names[i], u, err)
		}
		p := &Proc{ID: st.Node, Client: cl, container: names[i], HTTPAddr: strings.TrimPrefix(cl.Addr(), "http://")}
		for _, m := range st.Members {
			if m.ID == st.Node {
				p.RaftAddr = m.RaftAddr
			}
		}
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

func docker(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (p *Proc) containerRunning() bool {
	st, err := docker("inspect", "-f", "{{.State.Running}}", p.container)
	return err == nil && st == "true"
}

// inNetns runs iptables in the container's network namespace.
func (p *Proc) iptables(args ...string) error {
	pid, err := docker("inspect", "-f", "{{.State.Pid}}", p.container)
	if err != nil {
		return err
	}
	if pid == "" || pid == "0" {
		return fmt.Errorf("%s is not running", p.container)
	}
	cmd := exec.Command("nsenter", append([]string{"-t", pid, "-n", "iptables"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables in %s: %v: %s", p.container, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *Proc) containerIP() (string, error) {
	return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", p.container)
}

// partitionContainers cuts container i's Raft traffic from every other.
func (c *Cluster) partitionContainers(i int) error {
	me := c.Procs[i]
	for j, p := range c.Procs {
		if j == i {
			continue
		}
		ip, err := p.containerIP()
		if err != nil {
			return err
		}
		if ip == "" {
			continue // not running: nothing to cut
		}
		for _, dir := range []string{"--dport", "--sport"} {
			if err := me.iptables("-A", "INPUT", "-s", ip, "-p", "tcp", dir, raftPort, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// healContainers removes every rule this harness added.
func (c *Cluster) healContainers() error {
	var first error
	for _, p := range c.Procs {
		if !p.containerRunning() {
			continue
		}
		if err := p.iptables("-F", "INPUT"); err != nil && first == nil {
			first = err
		}
	}
	return first
}
