package chaos

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/client"
)

// FaultReshard is not a fault: it changes the ring while the workload
// runs. Each injection is one step of a cycle that adds groups up to
// twice the starting number, then retires the added ones, so the keys of
// every group move while clients read and write them.
const FaultReshard = "reshard"

// ReshardStep is one ring change made during a run.
type ReshardStep struct {
	Change string `json:"change"`
	// MovedKeys of TotalKeys changed group, as planned just before; the
	// moved share of the hash space next to the ideal share.
	MovedKeys  uint64        `json:"moved_keys"`
	TotalKeys  uint64        `json:"total_keys"`
	MovedShare float64       `json:"moved_share"`
	IdealShare float64       `json:"ideal_share"`
	Took       time.Duration `json:"took_ns"`
	// Replicas: a node step, whose MovedKeys and TotalKeys count group
	// replicas (copied to another node, held in all) rather than keys.
	Replicas bool `json:"replicas,omitempty"`
}

// reshardPlan keeps the cycle's direction between steps.
type reshardPlan struct {
	base      int // groups at the start
	shrinking bool
}

// reshard makes the next ring change of the cycle and waits for it to
// complete, through whichever node answers.
func (c *Cluster) reshard(ctx context.Context, plan *reshardPlan) (ReshardStep, error) {
	var step ReshardStep
	// A change cut short (the run ended while it moved keys) finishes
	// before the next one starts.
	view, err := c.ringStill(ctx)
	if err != nil {
		return step, err
	}
	if plan.base == 0 {
		plan.base = len(view.Groups)
	}
	n := len(view.Groups)
	switch {
	case n >= 2*plan.base:
		plan.shrinking = true
	case n <= plan.base:
		plan.shrinking = false
	}
	var query url.Values
	var change func(ctx context.Context, c *client.Client) (api.RingChangeStarted, error)
	if plan.shrinking {
		top := view.Groups[len(view.Groups)-1].ID
		query = url.Values{"remove": {fmt.Sprint(top)}}
		change = func(ctx context.Context, c *client.Client) (api.RingChangeStarted, error) {
			return c.RemoveGroup(ctx, fmt.Sprint(top))
		}
	} else {
		next := base.GroupID(0)
		for _, g := range view.Groups {
			next = max(next, g.ID)
		}
		// Let the cluster choose the id (retired ids are not reused); the
		// plan previews the next id above the live ones.
		query = url.Values{"add": {fmt.Sprint(next + 1)}}
		change = func(ctx context.Context, c *client.Client) (api.RingChangeStarted, error) {
			return c.AddGroup(ctx, 0, 1)
		}
	}
	var p api.Plan
	if err := c.anyNode(ctx, func(ctx context.Context, pr *Proc) error {
		var err error
		p, err = pr.Client.Plan(ctx, query, false)
		return err
	}); err != nil {
		return step, fmt.Errorf("planning %s: %w", query.Encode(), err)
	}
	step = ReshardStep{Change: p.Change, MovedKeys: p.MovedKeys, TotalKeys: p.TotalKeys, MovedShare: p.MovedShare, IdealShare: p.IdealShare}
	start := time.Now()
	var started api.RingChangeStarted
	if err := c.anyNode(ctx, func(ctx context.Context, pr *Proc) error {
		var err error
		started, err = change(ctx, pr.Client)
		return err
	}); err != nil {
		return step, fmt.Errorf("%s: %w", step.Change, err)
	}
	if started.Started != "" {
		step.Change = started.Started // with the id the cluster chose
	}
	err = poll(ctx, 100*time.Millisecond, func() error {
		var v api.RingInfo
		if err := c.anyNode(ctx, func(ctx context.Context, pr *Proc) error {
			var err error
			v, err = pr.Client.Ring(ctx)
			return err
		}); err != nil {
			return err
		}
		if v.Epoch <= view.Epoch || v.Migration != nil {
			return fmt.Errorf("%s: still moving keys", step.Change)
		}
		return nil
	})
	step.Took = time.Since(start)
	return step, err
}

// anyNode runs fn against each running node in turn until one succeeds.
// Each node gets 10 seconds: one that does not answer (paused, or cut
// off) does not hold the others up.
func (c *Cluster) anyNode(ctx context.Context, fn func(ctx context.Context, p *Proc) error) error {
	var err error
	for _, p := range c.Procs {
		if !p.Running() {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = fn(actx, p)
		cancel()
		if err == nil {
			return nil
		}
	}
	if err == nil {
		err = fmt.Errorf("no running node")
	}
	return err
}

// printReshards writes the ring changes of a run.
func printReshards(w io.Writer, steps []ReshardStep) {
	for _, s := range steps {
		if s.Replicas {
			fmt.Fprintf(w, "node change: %-28s moved %6d of %6d replicas (%.1f%%, ideal %.1f%%) in %v\n", s.Change, s.MovedKeys, s.TotalKeys,
				100*s.MovedShare, 100*s.IdealShare, s.Took.Round(time.Millisecond))
			continue
		}
		fmt.Fprintf(w, "ring change: %-28s moved %6d of %6d keys (%.1f%%; space %.1f%%, ideal %.1f%%) in %v\n", s.Change, s.MovedKeys, s.TotalKeys,
			100*float64(s.MovedKeys)/float64(max(s.TotalKeys, 1)), 100*s.MovedShare, 100*s.IdealShare, s.Took.Round(time.Millisecond))
	}
}
