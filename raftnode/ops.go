package raftnode

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/base"
)

// handler serves one node-to-node op on replica r of the request's group,
// which Serve (or the request's own routing) chose; resp arrives with
// ServedBy set.
type handler func(n *Node, ctx context.Context, r *replica, req Request, resp Response) (Response, error)

// handlers is every op a node serves, by family: ops_kv.go (writes, reads,
// waits), ops_verify.go (verification and repair), ops_moving.go (keys
// moving between groups), ops_meta.go (layout and membership). It is set
// in init: its handlers reach local again through the requests they make.
var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		opPut:          (*Node).serveWrite,
		opDelete:       (*Node).serveWrite,
		opGet:          keysOnly((*Node).serveRead),
		opScan:         keysOnly((*Node).serveRead),
		opVerify:       keysOnly((*Node).serveVerify),
		opVerifyResult: keysOnly((*Node).serveVerifyResult),
		opLayoutIndex:  (*Node).serveLayoutIndex,
		opWait:         (*Node).serveWait,
		opVerifyTree:   keysOnly((*Node).serveVerifyTree),
		opLeafEntries:  keysOnly((*Node).serveLeafEntries),
		opRangeScan:    (*Node).serveMovingOp,
		opFence:        (*Node).serveMovingOp,
		opUnfence:      (*Node).serveMovingOp,
		opIngest:       (*Node).serveMovingOp,
		opDrop:         (*Node).serveMovingOp,
		opRingChange:   (*Node).serveMovingOp,
		opRingAbort:    (*Node).serveMovingOp,
		opPinLeader:    (*Node).servePinLeader,
		opACL:          (*Node).serveACL,
		opRestoreLock:  (*Node).serveRestoreLock,
		opRangeStats:   keysOnly((*Node).serveRangeStats),
		opRepair:       keysOnly((*Node).serveRepair),
		opAddVoter:     (*Node).serveMembership,
		opAddNonvoter:  (*Node).serveMembership,
		opRemoveServer: (*Node).serveMembership,
		opJoin:         (*Node).serveJoin,
		opRemoveNode:   (*Node).serveRemoveNode,
		opNodeState:    (*Node).serveNodeState,
		opReplicaStep:  (*Node).serveReplicaStep,
	}
}

// keysOnly refuses h's op on a replica that holds no keys (the metadata
// group's).
func keysOnly(h handler) handler {
	return func(n *Node, ctx context.Context, r *replica, req Request, resp Response) (Response, error) {
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		return h(n, ctx, r, req, resp)
	}
}

// local runs req on replica r.
func (n *Node) local(ctx context.Context, r *replica, req Request) (Response, error) {
	resp := Response{ServedBy: n.cfg.ID}
	h, ok := handlers[req.Op]
	if !ok {
		return resp, fmt.Errorf("%w: unknown op %q", base.ErrBadRequest, req.Op)
	}
	return h(n, ctx, r, req, resp)
}
