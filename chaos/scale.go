package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
)

// FaultScale is not a fault either: it resizes the cluster while the
// workload runs. Its injections walk a cycle: add two nodes (replicas
// move onto them), double the groups (keys move into the new ones),
// retire the added groups, then remove the added nodes (their replicas
// move off first), and start again.
const FaultScale = "scale"

// scalePlan keeps the scale cycle's position between steps.
type scalePlan struct {
	baseNodes, baseGroups int
	phase                 int // 0 grow nodes, 1 grow groups, 2 shrink groups, 3 shrink nodes
	reshard               reshardPlan
}

// Spare is a node the scale nemesis can add: a local process it starts,
// or a container it creates with Up and deletes with Down.
type Spare struct {
	Name     string // container or node name
	URL      string // how this host reaches its HTTP API
	Up, Down string // shell commands ({name} is replaced)
}

// placement lists each group's replicas as the cluster shows them.
func placement(v api.ClusterInfo) map[uint32][]string {
	out := map[uint32][]string{}
	for _, n := range v.Nodes {
		for _, g := range n.Replicas {
			out[uint32(g)] = append(out[uint32(g)], string(n.ID))
		}
	}
	return out
}

// scale makes the next step of the cycle and waits until the cluster has
// settled after it.
func (c *Cluster) scale(ctx context.Context, plan *scalePlan) (ReshardStep, error) {
	view, err := c.ringStill(ctx)
	if err != nil {
		return ReshardStep{}, err
	}
	if plan.baseNodes == 0 {
		plan.baseNodes, plan.baseGroups = len(c.Procs), len(view.Groups)
		plan.reshard.base = len(view.Groups)
	}
	for range 4 {
		switch plan.phase {
		case 0:
			if len(c.Procs) < plan.baseNodes+2 && c.canAdd() {
				return c.addNode(ctx)
			}
		case 1:
			if len(view.Groups) < 2*plan.baseGroups {
				plan.reshard.shrinking = false
				return c.reshard(ctx, &plan.reshard)
			}
		case 2:
			if len(view.Groups) > plan.baseGroups {
				plan.reshard.shrinking = true
				return c.reshard(ctx, &plan.reshard)
			}
		case 3:
			if len(c.Procs) > plan.baseNodes {
				return c.removeNode(ctx)
			}
		}
		plan.phase = (plan.phase + 1) % 4
	}
	return ReshardStep{}, fmt.Errorf("scale: nothing to do (no spare node to add?)")
}

// scaleBack retires the groups and removes the nodes a run's scale steps
// added, so that the cluster ends the size it started.
func (c *Cluster) scaleBack(ctx context.Context, plan *scalePlan) ([]ReshardStep, error) {
	var steps []ReshardStep
	if plan.baseNodes == 0 {
		return nil, nil
	}
	if plan.phase < 2 {
		plan.phase = 2
	}
	for len(c.Procs) > plan.baseNodes || plan.phase == 2 {
		view, err := c.ringStill(ctx)
		if err != nil {
			return steps, err
		}
		if plan.phase == 2 && len(view.Groups) <= plan.baseGroups {
			plan.phase = 3
			continue
		}
		step, err := c.scale(ctx, plan)
		if err != nil {
			return steps, err
		}
		steps = append(steps, step)
	}
	plan.phase = 0
	return steps, nil
}

// ringStill waits until no ring change is in motion and returns the ring,
// as the node with the newest layout shows it (a node's layout may lag).
func (c *Cluster) ringStill(ctx context.Context) (api.RingInfo, error) {
	var view api.RingInfo
	err := poll(ctx, 100*time.Millisecond, func() error {
		var newest *api.RingInfo
		var lastErr error
		for _, p := range c.Procs {
			if !p.Running() {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := p.Client.Ring(actx)
			cancel()
			if err != nil {
				lastErr = err
				continue
			}
			if newest == nil || v.Epoch > newest.Epoch || v.Epoch == newest.Epoch && v.Migration != nil {
				newest = &v
			}
		}
		if newest == nil {
			return fmt.Errorf("no node answered: %v", lastErr)
		}
		if newest.Migration != nil {
			return fmt.Errorf("a ring change is in motion")
		}
		view = *newest
		return nil
	})
	return view, err
}

// reshardBack retires the groups a run's reshard steps added.
func (c *Cluster) reshardBack(ctx context.Context, plan *reshardPlan) ([]ReshardStep, error) {
	var steps []ReshardStep
	for plan.base > 0 {
		view, err := c.ringStill(ctx)
		if err != nil {
			return steps, err
		}
		if len(view.Groups) <= plan.base {
			break
		}
		plan.shrinking = true
		step, err := c.reshard(ctx, plan)
		if err != nil {
			return steps, err
		}
		steps = append(steps, step)
	}
	return steps, nil
}

func (c *Cluster) canAdd() bool {
	if c.containers {
		for _, s := range c.spares {
			if !c.has(s.Name) {
				return true
			}
		}
		return false
	}
	return c.local != nil
}

func (c *Cluster) has(name string) bool {
	for _, p := range c.Procs {
		if p.ID == name || p.container == name {
			return true
		}
	}
	return false
}

func (c *Cluster) clusterView(ctx context.Context) (api.ClusterInfo, error) {
	var v api.ClusterInfo
	err := c.anyNode(ctx, func(ctx context.Context, p *Proc) error {
		var err error
		v, err = p.Client.Cluster(ctx)
		return err
	})
	return v, err
}

// addNode starts a node that joins the cluster, waits until replicas have
// moved onto it, and reports the replicas moved next to the ideal (its
// share of all replicas).
func (c *Cluster) addNode(ctx context.Context) (ReshardStep, error) {
	before, err := c.waitSettled(ctx, func(api.ClusterInfo) bool { return true })
	if err != nil {
		return ReshardStep{}, err
	}
	start := time.Now()
	var p *Proc
	if c.containers {
		p, err = c.addContainer(ctx)
	} else {
		p, err = c.startNode(ctx, *c.local, c.nextIndex())
	}
	if err != nil {
		return ReshardStep{}, fmt.Errorf("adding a node: %w", err)
	}
	c.Procs = append(c.Procs, p)
	step := ReshardStep{Change: "add node " + p.ID}
	// The node joins in the background once it runs. Finish the step even
	// if the run's window closes meanwhile: a node that joined after the
	// harness stopped looking would be missed when the run scales back
	// (its removal would find no such member, and it would join later).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	after, err := c.waitSettled(wctx, func(v api.ClusterInfo) bool {
		for _, n := range v.Nodes {
			if string(n.ID) == p.ID {
				return true
			}
		}
		return false
	})
	step.Took = time.Since(start)
	if err != nil {
		return step, fmt.Errorf("%s: %w", step.Change, err)
	}
	fillMoves(&step, before, after, 1/float64(len(after.Nodes)))
	return step, nil
}

// removeNode removes the node added last: its replicas move off, it
// leaves, and its process or container is deleted.
func (c *Cluster) removeNode(ctx context.Context) (ReshardStep, error) {
	p := c.Procs[len(c.Procs)-1]
	before, err := c.waitSettled(ctx, func(api.ClusterInfo) bool { return true })
	if err != nil {
		return ReshardStep{}, err
	}
	step := ReshardStep{Change: "remove node " + p.ID}
	start := time.Now()
	held := 0
	for _, n := range before.Nodes {
		if string(n.ID) == p.ID {
			held = len(n.Replicas)
		}
	}
	err = c.anyNode(ctx, func(ctx context.Context, o *Proc) error {
		if o == p {
			return fmt.Errorf("not through the node leaving")
		}
		_, err := o.Client.RemoveNode(ctx, p.ID, false)
		if ce := (*client.Error)(nil); errors.As(err, &ce) && ce.Status == http.StatusNotFound {
			return nil // gone already (an earlier step was cut short)
		}
		return err
	})
	if err != nil {
		return step, fmt.Errorf("%s: %w", step.Change, err)
	}
	after, err := c.waitSettled(ctx, func(v api.ClusterInfo) bool {
		for _, n := range v.Nodes {
			if string(n.ID) == p.ID {
				return false
			}
		}
		return true
	})
	step.Took = time.Since(start)
	if err != nil {
		return step, fmt.Errorf("%s: %w", step.Change, err)
	}
	if err := c.deleteNode(p); err != nil {
		return step, err
	}
	c.Procs = c.Procs[:len(c.Procs)-1]
	total := 0
	for _, n := range before.Nodes {
		total += len(n.Replicas)
	}
	fillMoves(&step, before, after, float64(held)/float64(max(total, 1)))
	return step, nil
}

// waitSettled polls until the cluster shows done(view) and wants no more
// replica moves.
func (c *Cluster) waitSettled(ctx context.Context, done func(api.ClusterInfo) bool) (api.ClusterInfo, error) {
	var v api.ClusterInfo
	err := poll(ctx, 100*time.Millisecond, func() error {
		var err error
		if v, err = c.clusterView(ctx); err != nil {
			return err
		}
		if !done(v) || !v.Balanced {
			return errStillMoving(v)
		}
		return nil
	})
	return v, err
}

// errStillMoving says what the cluster is still doing, so that a step
// that times out names the move it waited for and how far it got.
func errStillMoving(v api.ClusterInfo) error {
	if v.Move == nil {
		return fmt.Errorf("replicas still moving (no move in progress, balanced %v)", v.Balanced)
	}
	return fmt.Errorf("replicas still moving: %s at %q for %.0fs", v.Move, v.Progress, v.MoveSeconds)
}

// fillMoves counts the replicas that changed node between two views.
func fillMoves(step *ReshardStep, before, after api.ClusterInfo, ideal float64) {
	b, a := placement(before), placement(after)
	total := 0
	for g, reps := range a {
		total += len(reps)
		for _, id := range reps {
			found := false
			for _, old := range b[g] {
				found = found || old == id
			}
			if !found {
				step.MovedKeys++ // a replica copied to a new node
			}
		}
	}
	step.TotalKeys = uint64(total)
	step.MovedShare = float64(step.MovedKeys) / float64(max(total, 1))
	step.IdealShare = ideal
	step.Replicas = true
}

// nextIndex numbers a new local node: node ids are never reused, so a
// node added again starts from an empty data directory.
func (c *Cluster) nextIndex() int {
	c.started++
	return c.started - 1
}

// deleteNode stops a node that has left and deletes its data: a node
// added again later starts empty.
func (c *Cluster) deleteNode(p *Proc) error {
	if c.containers {
		for _, s := range c.spares {
			if s.Name == p.container {
				return shell(strings.ReplaceAll(s.Down, "{name}", s.Name))
			}
		}
		return fmt.Errorf("no spare named %s", p.container)
	}
	return p.Kill()
}

// addContainer creates the first spare container not in the cluster and
// waits until it answers.
func (c *Cluster) addContainer(ctx context.Context) (*Proc, error) {
	for _, s := range c.spares {
		if c.has(s.Name) {
			continue
		}
		if err := shell(strings.ReplaceAll(s.Up, "{name}", s.Name)); err != nil {
			return nil, err
		}
		cl := client.New(s.URL)
		var p *Proc
		err := poll(ctx, 100*time.Millisecond, func() error {
			st, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			for _, m := range st.Members {
				if m.ID == st.Node {
					p = &Proc{ID: st.Node, Client: cl, container: s.Name, HTTPAddr: strings.TrimPrefix(cl.Addr(), "http://"), RaftAddr: m.RaftAddr}
					return nil
				}
			}
			return fmt.Errorf("%s has not joined yet", s.Name)
		})
		return p, err
	}
	return nil, fmt.Errorf("no spare container left")
}

func shell(cmdline string) error {
	out, err := exec.Command("sh", "-c", cmdline).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", cmdline, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// SetSpares gives a container cluster the containers the scale nemesis
// may add and remove.
func (c *Cluster) SetSpares(spares []Spare) { c.spares = spares }

// ComposeSpares are the spare containers of docker-compose.scale.yml
// (ringkv4 and ringkv5 on ports 7004 and 7005), created and deleted with
// docker compose from the directory holding both compose files.
func ComposeSpares(dir string) []Spare {
	compose := "docker compose"
	if exec.Command("docker", "compose", "version").Run() != nil {
		compose = "docker-compose"
	}
	files := fmt.Sprintf("%s -f %s -f %s", compose, filepath.Join(dir, "docker-compose.yml"), filepath.Join(dir, "docker-compose.scale.yml"))
	var out []Spare
	for i := 4; i <= 5; i++ {
		out = append(out, Spare{Name: fmt.Sprintf("ringkv%d", i), URL: fmt.Sprintf("http://127.0.0.1:700%d", i),
			Up: files + " up -d --no-deps {name}", Down: files + " rm -s -f -v {name}"})
	}
	return out
}
