package raftnode

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
)

// Scan pages stop at these bounds.
const (
	scanPageEntries = 512
	scanPageKeys    = 8192 // when most values are left out
	scanPageBytes   = protocol.MaxPageBytes
	scanExamine     = 50000
)

// ChangeRing starts a ring change: the metadata group records it and its
// leader moves the keys. It returns once the change is recorded, with the
// change as recorded (an added group without an id gets the next free one).
func (n *Node) ChangeRing(ctx context.Context, c layout.RingChange) (layout.RingChange, error) {
	before := n.RingEpoch()
	resp, err := n.do(ctx, protocol.Request{Op: protocol.OpRingChange, Group: base.MetaGroup, Change: &c})
	if err != nil {
		return c, err
	}
	if resp.Change != nil {
		c = *resp.Change
	}
	// Answer once this node routes by it too, so that what it reports next
	// shows the change.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		changed := n.meta.meta.Changed()
		if l := n.Layout(); l.Migration != nil || n.RingEpoch() > before {
			return c, nil
		}
		select {
		case <-changed:
		case <-wctx.Done():
			return c, nil
		}
	}
}

// AbortRingChange undoes the ring change in motion, if no transfer has
// flipped yet: the sources take their ranges back, the destinations drop
// their copies, and a group the change created is retired.
func (n *Node) AbortRingChange(ctx context.Context) error {
	_, err := n.do(ctx, protocol.Request{Op: protocol.OpRingAbort, Group: base.MetaGroup})
	return err
}

// wholeRing is the one range that covers the whole hash space.
var wholeRing = []ring.Range{{}}

// leadMetaCurrent reports whether this node leads the metadata group and,
// if it does, returns once its layout holds every entry committed before
// its term began, with that term. A new leader may not have applied them
// yet (a restarted node starts from its last snapshot): its layout could
// still show a ring change or replica move that has since finished, and
// carrying it on would redo steps that are no longer right, such as
// dropping ranges that have since moved back.
func (n *Node) leadMetaCurrent(ctx context.Context) (term uint64, leads bool, err error) {
	term = n.meta.raft.CurrentTerm()
	if !n.meta.isLeader() {
		return term, false, nil
	}
	if err := n.meta.ensureTermCommitted(ctx, term); err != nil {
		var nl *base.NotLeaderError
		if errors.As(err, &nl) {
			return term, false, nil
		}
		return term, false, err
	}
	return term, true, nil
}

// moverCluster is the node as the ring-change mover (package reshard)
// sees it.
type moverCluster struct{ n *Node }

func (c moverCluster) Layout() *layout.Layout         { return c.n.Layout() }
func (c moverCluster) LayoutChanged() <-chan struct{} { return c.n.meta.meta.Changed() }
func (c moverCluster) LeadsMeta() bool                { return c.n.meta.isLeader() }
func (c moverCluster) Logger() *slog.Logger           { return c.n.log }

func (c moverCluster) LeadsMetaCurrent(ctx context.Context) (uint64, bool, error) {
	return c.n.leadMetaCurrent(ctx)
}

func (c moverCluster) Record(ctx context.Context, cmd layout.Command) error {
	_, err := c.n.meta.apply(ctx, mustJSON(cmd))
	return err
}

func (c moverCluster) Do(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	return c.n.do(ctx, req)
}
