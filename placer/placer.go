package placer

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// Cluster is what the placer needs of the node that runs it.
type Cluster interface {
	// Layout is the node's current layout; LayoutChanged is closed at its
	// next change.
	Layout() *layout.Layout
	LayoutChanged() <-chan struct{}
	// LeadsMeta says whether this node leads the metadata group now;
	// LeadsMetaCurrent also waits until its layout covers every entry its
	// term committed before it acts on it.
	LeadsMeta() bool
	LeadsMetaCurrent(ctx context.Context) (bool, error)
	// Record puts a metadata command through the metadata group's log.
	Record(ctx context.Context, c layout.Command) error
	// Step runs the next step of a replica move on the group's leader
	// (abort undoes it); done says the move has ended, progress how far
	// it is (protocol.StepCompleted, protocol.StepAborted, ...).
	Step(ctx context.Context, mv layout.ReplicaMove, abort bool) (done bool, progress string, err error)
	// Reachable says whether node id answers within a second.
	Reachable(ctx context.Context, id base.NodeID) bool
	// Evict removes a node that has finished leaving from every group and
	// from the layout.
	Evict(ctx context.Context, id base.NodeID) error
	// ShortAfterRemoval names the groups that would fall below a majority
	// of the replication factor without node id.
	ShortAfterRemoval(l *layout.Layout, id base.NodeID) []string
	Logger() *slog.Logger
}

// Options tune the placer.
type Options struct {
	// MoveStall is how long a move waits for a destination that does not
	// answer before it is undone.
	MoveStall time.Duration
	// OnReplicaMove, when set, is called after each step that did not end
	// the move (a test hook).
	OnReplicaMove func(ctx context.Context, mv layout.ReplicaMove, progress string)
}

// MoveState is the placer's report on the move it runs.
type MoveState struct {
	Move     layout.ReplicaMove
	Progress string
	Since    time.Time
}

// Placer moves replicas where the placement rule (layout.NextMove) wants
// them, one at a time, while its node leads the metadata group.
type Placer struct {
	c      Cluster
	o      Options
	moving atomic.Pointer[MoveState]
}

// New returns a placer over c.
func New(c Cluster, o Options) *Placer { return &Placer{c: c, o: o} }

// Moving is the move this placer runs, or nil.
func (p *Placer) Moving() *MoveState { return p.moving.Load() }

// Loop places replicas until ctx ends. Every move is recorded in the
// metadata group before it starts and each of its steps is idempotent,
// so a new metadata leader carries a move on after a crash.
func (p *Placer) Loop(ctx context.Context) {
	for {
		changed := p.c.LayoutChanged()
		if p.c.LeadsMeta() {
			if err := p.place(ctx); err != nil && ctx.Err() == nil {
				p.c.Logger().Warn("replica placement: will retry", "err", err)
			}
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// place finishes the move in progress, removes a node that has finished
// leaving, or starts the next move.
func (p *Placer) place(ctx context.Context) error {
	if leads, err := p.c.LeadsMetaCurrent(ctx); !leads || err != nil {
		return err
	}
	l := p.c.Layout()
	if !l.Initialized {
		return nil
	}
	if l.Move != nil {
		return p.runMove(ctx, *l.Move)
	}
	counts := l.ReplicaCounts()
	for _, nd := range l.Nodes {
		// A leaving node goes once its replicas have moved, or once
		// those left have nowhere to go and no group would fall short
		// without them (a removal below the replication factor).
		if nd.Leaving && (counts[nd.ID] == 0 || (l.CannotMoveOff(nd.ID) && len(p.c.ShortAfterRemoval(l, nd.ID)) == 0)) {
			ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return p.c.Evict(ectx, nd.ID)
		}
	}
	if l.Migration != nil {
		return nil // keys are moving between groups: replicas wait
	}
	// A node that does not answer gets no replica: a move onto it would
	// wait for it to catch up for as long as it is down.
	avoid := map[base.NodeID]bool{}
	var mv *layout.ReplicaMove
	for {
		if mv = l.NextMove(avoid); mv == nil {
			return nil
		}
		if p.c.Reachable(ctx, mv.To) {
			break
		}
		p.c.Logger().Info("replica placement: destination does not answer, passing it over", "node", mv.To, "move", mv.String())
		avoid[mv.To] = true
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := p.c.Record(actx, layout.Command{Op: layout.OpReplicaMoveStart, Move: mv})
	cancel()
	if err != nil {
		return fmt.Errorf("recording %s: %w", mv, err)
	}
	return p.runMove(ctx, *mv)
}

// runMove takes a recorded move step by step to its end, then records
// that. A move whose destination stopped being eligible (drained,
// removed) is undone instead.
func (p *Placer) runMove(ctx context.Context, mv layout.ReplicaMove) error {
	started := time.Now()
	log := p.c.Logger()
	log.Info("moving a replica", "move", mv.String())
	defer p.moving.Store(nil)
	// The destination is probed about once a second; once it has not
	// answered for the stall timeout the move is undone, so a node that
	// died in the middle of a move cannot hold placement up (drains
	// included) for as long as it stays down.
	var silentSince, probed time.Time
	stalled := false
	// A move that stays at one step for the stall timeout while its
	// destination answers is reported once: it waits on something the
	// log should name (a replica that does not catch up, a transfer
	// refused).
	lastProgress, progressSince, reported := "", time.Now(), false
	for {
		l := p.c.Layout()
		if l.Move == nil || *l.Move != mv || !p.c.LeadsMeta() {
			return nil // ended, or no longer ours to run
		}
		abort := stalled
		if to, ok := l.Node(mv.To); !ok || !to.Eligible() {
			abort = true
		}
		if !abort && time.Since(probed) >= time.Second {
			probed = time.Now()
			switch {
			case p.c.Reachable(ctx, mv.To):
				silentSince = time.Time{}
			case silentSince.IsZero():
				silentSince = probed
			case time.Since(silentSince) >= p.o.MoveStall:
				log.Warn("replica move: destination has not answered, undoing the move", "move", mv.String(), "silent", time.Since(silentSince).Round(time.Millisecond))
				stalled, abort = true, true
			}
		}
		if _, ok := l.Group(mv.Group); !ok {
			// The group was retired meanwhile: nothing left to move.
			return p.endMove(ctx, mv, true)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		done, progress, err := p.c.Step(sctx, mv, abort)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", mv, err)
		}
		p.moving.Store(&MoveState{Move: mv, Progress: progress, Since: started})
		if progress != lastProgress {
			lastProgress, progressSince, reported = progress, time.Now(), false
		} else if !reported && time.Since(progressSince) >= p.o.MoveStall {
			reported = true
			log.Warn("replica move: no progress", "move", mv.String(), "step", progress, "for", time.Since(progressSince).Round(time.Millisecond))
		}
		if done {
			if err := p.endMove(ctx, mv, abort && progress != protocol.StepCompleted); err != nil {
				return err
			}
			log.Info("replica moved", "move", mv.String(), "outcome", progress, "took", time.Since(started).Round(time.Millisecond))
			return nil
		}
		if p.o.OnReplicaMove != nil {
			p.o.OnReplicaMove(ctx, mv, progress)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *Placer) endMove(ctx context.Context, mv layout.ReplicaMove, aborted bool) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.c.Record(actx, layout.Command{Op: layout.OpReplicaMoveEnd, Move: &mv, Aborted: aborted})
}
