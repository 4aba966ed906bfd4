package raftnode

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/store"
)

// WriteOptions qualifies a Put or Delete.
type WriteOptions struct {
	// HasCAS makes the write conditional on the key's modify index being
	// CAS (0: the key must be absent).
	HasCAS bool
	CAS    uint64
	// Async acknowledges the write once the group leader has durably
	// appended it to its own log, before any follower has it: it can be
	// lost if that leader dies first. Not with HasCAS.
	Async bool
}

// ListOptions selects keys for List.
type ListOptions struct {
	Prefix      []byte
	After       []byte
	Limit       int
	KeysOnly    bool
	Consistency Consistency
}

// ReadResult is a key read with the group and index it was served at.
type ReadResult struct {
	KV
	RaftIndex uint64
	ServedBy  base.NodeID
}

// Put writes key=value and returns once a majority committed it and it was
// applied.
func (n *Node) Put(ctx context.Context, key, value []byte, o WriteOptions) (WriteResult, base.NodeID, error) {
	return n.write(ctx, Request{Op: opPut, Key: key, Value: value, HasCAS: o.HasCAS, CAS: o.CAS, Async: o.Async})
}

// Delete removes key. Deleting an absent key returns ErrNotFound.
func (n *Node) Delete(ctx context.Context, key []byte, o WriteOptions) (WriteResult, base.NodeID, error) {
	return n.write(ctx, Request{Op: opDelete, Key: key, HasCAS: o.HasCAS, CAS: o.CAS, Async: o.Async})
}

func (n *Node) write(ctx context.Context, req Request) (WriteResult, base.NodeID, error) {
	if err := req.Validate(); err != nil {
		return WriteResult{}, "", err
	}
	resp, err := n.routed(ctx, req)
	if err != nil {
		return WriteResult{}, resp.ServedBy, err
	}
	return *resp.Write, resp.ServedBy, nil
}

// routed runs a request on the group owning its key. A key whose range is
// moving to another group is held: the request is routed again as the
// layout changes, until ctx ends.
func (n *Node) routed(ctx context.Context, req Request) (Response, error) {
	for {
		changed := n.meta.meta.Changed()
		g, err := n.Layout().Route(req.Key)
		if err != nil {
			return Response{}, err
		}
		req.Group = g
		resp, err := n.do(ctx, req)
		if !errors.Is(err, base.ErrMoved) {
			return resp, err
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			if l := n.Layout().Restore; l != nil {
				// Still refused before it was proposed: safe to retry.
				return resp, fmt.Errorf("%w: key %q: a restore is in progress (%s); writes wait until it ends", base.ErrUnavailable, req.Key, l.ID)
			}
			return resp, err
		}
	}
}

// Get reads key at consistency c.
func (n *Node) Get(ctx context.Context, key []byte, c Consistency) (ReadResult, error) {
	return n.GetAt(ctx, key, c, 0)
}

// GetAt reads key at consistency c from a replica that has applied at
// least minIndex of the key's group (0: any), waiting for it: a client
// reads its own asynchronous write from any replica this way.
func (n *Node) GetAt(ctx context.Context, key []byte, c Consistency, minIndex uint64) (ReadResult, error) {
	req := Request{Op: opGet, Key: key, Consistency: c, Index: minIndex}
	resp, err := n.routed(ctx, req)
	if err = readError(err); err != nil {
		g, _ := n.Layout().Route(key)
		return ReadResult{ServedBy: resp.ServedBy, KV: KV{Group: g}}, err
	}
	return ReadResult{KV: *resp.Entry, RaftIndex: resp.RaftIndex, ServedBy: resp.ServedBy}, nil
}

// do runs req where it must run: here when this node leads the group (or
// the read is stale), otherwise on the leader's node. It retries while the
// leader is unknown or moving, until ctx ends.
func (n *Node) do(ctx context.Context, req Request) (Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.Timing.ApplyDeadline)
		defer cancel()
	}
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		resp, err := n.tryOnce(ctx, req, attempt)
		var nl *base.NotLeaderError
		switch {
		case err == nil:
			return resp, nil
		case errors.As(err, &nl):
			n.setHint(req.Group, nl.Leader)
		case errors.Is(err, base.ErrNoLeader):
			if r := n.replica(req.Group); r == nil || r.leader() == "" {
				// The hinted leader is gone: ask the group's
				// replicas in turn.
				n.setHint(req.Group, "")
			}
		default:
			return resp, err
		}
		if !sleepCtx(ctx, backoff) {
			if n.leaderOf(req.Group) == "" {
				return resp, fmt.Errorf("%w: group %d", base.ErrNoLeader, req.Group)
			}
			return resp, fmt.Errorf("%w: group %d: leader did not answer in time", base.ErrUnavailable, req.Group)
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

func (n *Node) setHint(g base.GroupID, leader base.NodeID) {
	n.mu.Lock()
	n.hints[g] = leader
	n.mu.Unlock()
}

// leaderOf returns the group's leader as known locally or hinted by a peer.
func (n *Node) leaderOf(g base.GroupID) base.NodeID {
	if r := n.replica(g); r != nil {
		if id := r.leader(); id != "" {
			return id
		}
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.hints[g]
}

func (n *Node) tryOnce(ctx context.Context, req Request, attempt int) (Response, error) {
	r := n.replica(req.Group)
	if r != nil && (req.servedLocally() || r.isLeader()) {
		return n.local(ctx, r, req)
	}
	leader := n.leaderOf(req.Group)
	if leader == "" {
		// No replica here, or one that has not heard from a leader yet
		// (just added to the group): ask the group's other replicas, one
		// more on each attempt; each answers or names the leader.
		if g, ok := n.Layout().Group(req.Group); ok {
			var others []base.NodeID
			for _, id := range g.Replicas {
				if id != n.cfg.ID {
					others = append(others, id)
				}
			}
			if len(others) > 0 {
				leader = others[attempt%len(others)]
			}
		}
	}
	if leader == "" {
		return Response{}, base.ErrNoLeader
	}
	if leader == n.cfg.ID {
		if r == nil {
			return Response{}, base.ErrNoLeader
		}
		return n.local(ctx, r, req) // leadership just changed: let raft decide
	}
	info, ok := n.Layout().Node(leader)
	if !ok {
		return Response{}, base.ErrNoLeader
	}
	return n.fwd.to(ctx, info, req)
}

// Serve runs a request forwarded by another node, here and only here.
func (n *Node) Serve(ctx context.Context, req Request) (Response, error) {
	if err := req.Validate(); err != nil {
		return Response{}, err
	}
	if h := n.cfg.Knobs.OnServe; h != nil {
		if err := h(req.Op); err != nil {
			return Response{ServedBy: n.cfg.ID}, err
		}
	}
	r := n.replica(req.Group)
	if r == nil {
		return Response{ServedBy: n.cfg.ID}, &base.NotLeaderError{Group: req.Group}
	}
	if !req.servedLocally() && !r.isLeader() {
		return Response{ServedBy: n.cfg.ID}, r.notLeader()
	}
	return n.local(ctx, r, req)
}

// local runs req on replica r.
func (n *Node) local(ctx context.Context, r *replica, req Request) (Response, error) {
	resp := Response{ServedBy: n.cfg.ID}
	switch req.Op {
	case opPut, opDelete:
		cmd := store.Command{Op: store.OpPut, Key: req.Key, Value: req.Value, HasCAS: req.HasCAS, CAS: req.CAS}
		if req.Op == opDelete {
			cmd.Op, cmd.Value = store.OpDelete, nil
		}
		if r.st != nil && r.st.Fenced(req.Key) {
			// Refused at apply anyway: say so now, without a log entry.
			return resp, fmt.Errorf("%w: key %q", base.ErrMoved, req.Key)
		}
		r.writes.Add(1)
		if req.Async {
			// While this group hands ranges over, its writes are
			// synchronous: one acknowledged at its append could still be
			// refused by a fence that follows it.
			// So are they during a restore, which fences every group.
			r.asyncMu.RLock()
			if l := n.Layout(); (l.Migration == nil || !l.Migration.sourcing(r.id)) && l.Restore == nil {
				if n.cfg.Knobs.OnAsyncWrite != nil {
					n.cfg.Knobs.OnAsyncWrite(r.id, req.Key)
				}
				at, err := r.applyAsync(ctx, cmd.Encode(), req.Key)
				r.asyncMu.RUnlock()
				if err != nil {
					return resp, err
				}
				idx := at.index + r.st.IndexOffset()
				if req.Op == opDelete {
					idx = 0
				}
				resp.Write = &WriteResult{Key: req.Key, Index: idx, Group: r.id, RaftIndex: at.index, Async: true, RaftTerm: at.term}
				return resp, nil
			}
			r.asyncMu.RUnlock()
		}
		out, err := r.applyWrite(ctx, cmd.Encode(), req.Key)
		if err != nil {
			return resp, err
		}
		res, ok := out.(store.Result)
		if !ok {
			return resp, fmt.Errorf("group %d: unexpected apply result %T", r.id, out)
		}
		switch {
		case res.Err != nil:
			return resp, fmt.Errorf("%w: %v", base.ErrBadRequest, res.Err)
		case res.Moved:
			return resp, fmt.Errorf("%w: key %q", base.ErrMoved, req.Key)
		case res.CASFailed:
			return resp, &base.CASFailedError{Current: res.Current}
		case res.NotFound:
			return resp, fmt.Errorf("%w: key %q", base.ErrNotFound, req.Key)
		}
		resp.Write = &WriteResult{Key: req.Key, Index: res.ModifyIndex, Group: r.id, RaftIndex: res.Index}
		return resp, nil
	case opGet, opScan:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		if err := r.readBarrier(ctx, req.Consistency); err != nil {
			return resp, err
		}
		if req.Index > 0 {
			if err := r.waitAppliedLocal(ctx, req.Index); err != nil {
				return resp, err
			}
		}
		resp.RaftIndex = r.st.AppliedIndex()
		// A restore's fence holds writes only: with no ring change in
		// motion, this group still answers for its fenced keys.
		l := n.Layout()
		restoring := l.Restore != nil && l.Migration == nil
		if req.Op == opGet {
			if r.st.Fenced(req.Key) && !restoring {
				return resp, fmt.Errorf("%w: key %q", base.ErrMoved, req.Key)
			}
			e, err := r.st.Get(req.Key)
			if errors.Is(err, store.ErrNotFound) {
				return resp, fmt.Errorf("%w: key %q", base.ErrNotFound, req.Key)
			}
			if err != nil {
				return resp, err
			}
			resp.Entry = &KV{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Group: r.id}
			return resp, nil
		}
		// A page is bounded whatever the caller asks; a caller that does
		// not page (an earlier release) gets all or an error, never a
		// silently short answer.
		o := store.ScanOptions{Prefix: req.Prefix, After: req.After, Limit: req.Limit, KeysOnly: req.KeysOnly, Fenced: restoring,
			MaxBytes: min(req.MaxBytes, int(maxScanPage.Load()))}
		if req.MaxBytes == 0 {
			o.MaxBytes = int(maxUnpagedScan.Load())
		}
		if err := n.waitLayout(ctx, req.LayoutIndex); err != nil {
			return resp, err
		}
		l = n.Layout() // as new as the lister's, at least
		if req.Routing != 0 {
			if v := l.RoutingVersion(); v != req.Routing {
				return resp, fmt.Errorf("%w: the ring changed while the list ran (routing %x, not %x)", base.ErrMoved, v, req.Routing)
			}
		}
		if l.Migration != nil {
			// While ranges move, a key can sit in two groups: list it
			// where this node routes it, so that a limit counts only the
			// keys this group answers for.
			o.Skip = func(k []byte) bool {
				g, err := l.Route(k)
				return err == nil && g != r.id
			}
		}
		es, err := r.st.Scan(o)
		if err != nil {
			return resp, err
		}
		resp.More = (o.Limit > 0 && len(es) >= o.Limit) || store.ScanSize(es) >= o.MaxBytes
		if resp.More && req.MaxBytes == 0 && (req.Limit == 0 || len(es) < req.Limit) {
			return resp, fmt.Errorf("%w: group %d holds more than %d MiB under this prefix: list in pages (limit and after)", base.ErrBadRequest, r.id, maxUnpagedScan.Load()>>20)
		}
		resp.Entries = make([]KV, len(es))
		for i, e := range es {
			resp.Entries[i] = KV{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Group: r.id}
		}
		return resp, nil
	case opVerify:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		out, err := r.apply(ctx, store.Command{Op: store.OpVerify, Key: req.Key, Deep: req.Deep}.Encode())
		if err != nil {
			return resp, err
		}
		res, ok := out.(store.Result)
		if !ok || res.Root == nil {
			return resp, fmt.Errorf("group %d: verification entry applied without a root", r.id)
		}
		resp.Verified = verifiedOf(*res.Root)
		return resp, nil
	case opVerifyResult:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		root, ok := r.st.VerifiedRoot(string(req.Key))
		if !ok {
			return resp, fmt.Errorf("%w: no verification %s applied here yet", base.ErrNotFound, req.Key)
		}
		resp.Verified = verifiedOf(root)
		if req.Deep {
			t, done, err := r.st.VerifiedData(string(req.Key))
			switch {
			case !done:
				return resp, fmt.Errorf("%w: verification %s: still reading the data", base.ErrNotFound, req.Key)
			case err != nil:
				resp.Verified.DataError = err.Error()
			default:
				d := t.Root()
				resp.Verified.DataRoot = hex.EncodeToString(d[:])
			}
		}
		return resp, nil
	case opLayoutIndex:
		if r != n.meta {
			return resp, fmt.Errorf("%w: layout_index on group %d", base.ErrBadRequest, r.id)
		}
		index, err := r.readIndex(ctx, req.Consistency)
		if err != nil {
			return resp, err
		}
		resp.RaftIndex = index
		return resp, nil
	case opWait:
		if err := r.waitCommitted(ctx, req.Index, req.Term); err != nil {
			return resp, err
		}
		resp.RaftIndex = req.Index
		return resp, nil
	case opVerifyTree:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		t, ok := r.st.VerifiedTree(string(req.Key))
		if req.Deep {
			var done bool
			t, done, _ = r.st.VerifiedData(string(req.Key))
			ok = done && t != nil
		}
		if !ok {
			return resp, fmt.Errorf("%w: no tree kept for verification %s", base.ErrNotFound, req.Key)
		}
		if req.Level > t.Depth() {
			return resp, fmt.Errorf("%w: level %d below the tree's depth %d", base.ErrBadRequest, req.Level, t.Depth())
		}
		ds, err := t.Nodes(req.Level, req.Indexes)
		if err != nil {
			return resp, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
		}
		resp.Digests = make([][]byte, len(ds))
		for i := range ds {
			resp.Digests[i] = ds[i][:]
		}
		return resp, nil
	case opLeafEntries:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		es, err := r.st.LeafEntries(req.Level, req.Indexes, req.Index)
		if err != nil {
			return resp, err
		}
		resp.Leaf = make([]LeafEntry, len(es))
		for i, e := range es {
			resp.Leaf[i] = LeafEntry{Key: e.Key, ModifyIndex: e.ModifyIndex, Digest: e.Digest[:]}
		}
		return resp, nil
	case opRangeScan, opFence, opUnfence, opIngest, opDrop, opRingChange, opRingAbort:
		return n.serveMoving(ctx, r, req)
	case opPinLeader:
		_, err := r.apply(ctx, mustJSON(metaCommand{Op: "pin_leader", Group: req.Target, Node: req.Node}))
		return resp, err
	case opACL:
		if r != n.meta {
			return resp, fmt.Errorf("%w: acl on group %d", base.ErrBadRequest, r.id)
		}
		if _, err := r.apply(ctx, mustJSON(metaCommand{Op: "acl", ACL: req.ACL})); err != nil {
			return resp, err
		}
		_, resp.RaftIndex = r.meta.LayoutAt() // at or past the change
		return resp, nil
	case opRestoreLock:
		lock := &RestoreLock{ID: req.Restore}
		if req.Node != nil {
			lock.Node = req.Node.ID
		}
		_, err := r.apply(ctx, mustJSON(metaCommand{Op: "restore_" + req.RestoreStep, Restore: lock}))
		return resp, err
	case opRangeStats:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		// Count what the group has committed, not what a new leader has
		// applied so far.
		if err := r.readBarrier(ctx, Linearizable); err != nil {
			return resp, err
		}
		t, err := rangeStats(r.st, req.Ranges)
		resp.Tallies = t
		return resp, err
	case opRepair:
		if r.st == nil {
			return resp, fmt.Errorf("%w: group %d holds no keys", base.ErrBadRequest, r.id)
		}
		resp.Repaired = n.repair(ctx, r, req.Index)
		return resp, nil
	case opAddVoter, opAddNonvoter, opRemoveServer:
		return resp, n.changeMembership(ctx, r, req)
	case opJoin:
		return resp, n.joinLocal(ctx, *req.Node)
	case opRemoveNode:
		held, err := n.removeLocal(ctx, req.Node.ID, req.Force)
		resp.Count = held
		return resp, err
	case opNodeState:
		return resp, n.setDraining(ctx, req.Node.ID, req.Node.Draining)
	case opReplicaStep:
		return n.replicaStep(ctx, r, *req.Move, req.Abort)
	}
	return resp, fmt.Errorf("%w: unknown op %q", base.ErrBadRequest, req.Op)
}
