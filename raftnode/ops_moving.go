package raftnode

import (
	"context"

	"github.com/ringkv/ringkv/protocol"
)

// Node-to-node ops that move keys between groups (the work is in
// mover.go), and the range statistics that plan a move.

// serveMovingOp runs a moving op (see serveMoving).
func (n *Node) serveMovingOp(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	return n.serveMoving(ctx, r, req, resp)
}

// serveRangeStats counts the keys and bytes the group has committed in hash ranges.
func (n *Node) serveRangeStats(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	// Count what the group has committed, not what a new leader has
	// applied so far.
	if err := r.readBarrier(ctx, protocol.Linearizable); err != nil {
		return resp, err
	}
	t, err := rangeStats(r.st, req.Ranges)
	resp.Tallies = t
	return resp, err
}
