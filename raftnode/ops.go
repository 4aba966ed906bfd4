package raftnode

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
)

// handler serves one node-to-node op on replica r of the request's group,
// which Serve (or the request's own routing) chose; resp arrives with
// ServedBy set.
type handler func(n *Node, ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error)

// handlers is every op a node serves, by family: ops_kv.go (writes, reads,
// waits), ops_verify.go (verification and repair), ops_moving.go (keys
// moving between groups), ops_meta.go (layout and membership). It is set
// in init: its handlers reach local again through the requests they make.
var handlers map[protocol.Op]handler

func init() {
	handlers = map[protocol.Op]handler{
		protocol.OpPut:          (*Node).serveWrite,
		protocol.OpDelete:       (*Node).serveWrite,
		protocol.OpGet:          keysOnly((*Node).serveRead),
		protocol.OpScan:         keysOnly((*Node).serveRead),
		protocol.OpVerify:       keysOnly((*Node).serveVerify),
		protocol.OpVerifyResult: keysOnly((*Node).serveVerifyResult),
		protocol.OpLayoutIndex:  (*Node).serveLayoutIndex,
		protocol.OpWait:         (*Node).serveWait,
		protocol.OpVerifyTree:   keysOnly((*Node).serveVerifyTree),
		protocol.OpLeafEntries:  keysOnly((*Node).serveLeafEntries),
		protocol.OpRangeScan:    (*Node).serveMoving,
		protocol.OpFence:        (*Node).serveMoving,
		protocol.OpUnfence:      (*Node).serveMoving,
		protocol.OpIngest:       (*Node).serveMoving,
		protocol.OpDrop:         (*Node).serveMoving,
		protocol.OpRingChange:   (*Node).serveMoving,
		protocol.OpRingAbort:    (*Node).serveMoving,
		protocol.OpPinLeader:    (*Node).servePinLeader,
		protocol.OpACL:          (*Node).serveACL,
		protocol.OpRestoreLock:  (*Node).serveRestoreLock,
		protocol.OpRangeStats:   keysOnly((*Node).serveRangeStats),
		protocol.OpRepair:       keysOnly((*Node).serveRepair),
		protocol.OpAddVoter:     (*Node).serveMembership,
		protocol.OpAddNonvoter:  (*Node).serveMembership,
		protocol.OpRemoveServer: (*Node).serveMembership,
		protocol.OpJoin:         (*Node).serveJoin,
		protocol.OpRemoveNode:   (*Node).serveRemoveNode,
		protocol.OpNodeState:    (*Node).serveNodeState,
		protocol.OpReplicaStep:  (*Node).serveReplicaStep,
		protocol.OpChanges:      keysOnly((*Node).serveChanges),
	}
}

// keysOnly refuses h's op on a replica that holds no keys (the metadata
// group's).
func keysOnly(h handler) handler {
	return func(n *Node, ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		return h(n, ctx, r, req, resp)
	}
}

// local runs req on replica r.
func (n *Node) local(ctx context.Context, r *replica, req protocol.Request) (protocol.Response, error) {
	resp := protocol.Response{ServedBy: n.cfg.ID}
	h, ok := handlers[req.Op]
	if !ok {
		return resp, fmt.Errorf("%w: unknown op %q", base.ErrBadRequest, req.Op)
	}
	return h(n, ctx, r, req, resp)
}
