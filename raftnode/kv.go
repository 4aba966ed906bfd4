package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
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
	Consistency protocol.Consistency
}

// ReadResult is a key read with the group and index it was served at.
type ReadResult struct {
	protocol.KV
	RaftIndex uint64
	ServedBy  base.NodeID
}

// Put writes key=value and returns once a majority committed it and it was
// applied.
func (n *Node) Put(ctx context.Context, key, value []byte, o WriteOptions) (protocol.WriteResult, base.NodeID, error) {
	return n.write(ctx, protocol.Request{Op: protocol.OpPut, Key: key, Value: value, HasCAS: o.HasCAS, CAS: o.CAS, Async: o.Async})
}

// Delete removes key. Deleting an absent key returns ErrNotFound.
func (n *Node) Delete(ctx context.Context, key []byte, o WriteOptions) (protocol.WriteResult, base.NodeID, error) {
	return n.write(ctx, protocol.Request{Op: protocol.OpDelete, Key: key, HasCAS: o.HasCAS, CAS: o.CAS, Async: o.Async})
}

func (n *Node) write(ctx context.Context, req protocol.Request) (protocol.WriteResult, base.NodeID, error) {
	if err := req.Validate(); err != nil {
		return protocol.WriteResult{}, "", err
	}
	resp, err := n.routed(ctx, req)
	if err != nil {
		return protocol.WriteResult{}, resp.ServedBy, err
	}
	return *resp.Write, resp.ServedBy, nil
}

// routed runs a request on the group owning its key. A key whose range is
// moving to another group is held: the request is routed again as the
// layout changes, until ctx ends.
func (n *Node) routed(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	for {
		changed := n.meta.meta.Changed()
		g, err := n.Layout().Route(req.Key)
		if err != nil {
			return protocol.Response{}, err
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
func (n *Node) Get(ctx context.Context, key []byte, c protocol.Consistency) (ReadResult, error) {
	return n.GetAt(ctx, key, c, 0)
}

// GetAt reads key at consistency c from a replica that has applied at
// least minIndex of the key's group (0: any), waiting for it: a client
// reads its own asynchronous write from any replica this way.
func (n *Node) GetAt(ctx context.Context, key []byte, c protocol.Consistency, minIndex uint64) (ReadResult, error) {
	req := protocol.Request{Op: protocol.OpGet, Key: key, Consistency: c, Index: minIndex}
	resp, err := n.routed(ctx, req)
	if err = base.ReadError(err); err != nil {
		g, _ := n.Layout().Route(key)
		return ReadResult{ServedBy: resp.ServedBy, KV: protocol.KV{Group: g}}, err
	}
	return ReadResult{KV: *resp.Entry, RaftIndex: resp.RaftIndex, ServedBy: resp.ServedBy}, nil
}

// do runs req where it must run: here when this node leads the group (or
// the read is stale), otherwise on the leader's node. It retries while the
// leader is unknown or moving, until ctx ends.
func (n *Node) do(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.Timing.ApplyDeadline)
		defer cancel()
	}
	var wait *backoff.ExponentialBackOff // made at the first retry: most requests need none
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
		if wait == nil {
			wait = retryBackoff(5*time.Millisecond, 100*time.Millisecond)
		}
		if !sleepCtx(ctx, wait.NextBackOff()) {
			if n.leaderOf(req.Group) == "" {
				return resp, fmt.Errorf("%w: group %d", base.ErrNoLeader, req.Group)
			}
			return resp, fmt.Errorf("%w: group %d: leader did not answer in time", base.ErrUnavailable, req.Group)
		}
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

func (n *Node) tryOnce(ctx context.Context, req protocol.Request, attempt int) (protocol.Response, error) {
	r := n.replica(req.Group)
	if r != nil && (servedLocally(req) || r.isLeader()) {
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
		return protocol.Response{}, base.ErrNoLeader
	}
	if leader == n.cfg.ID {
		if r == nil {
			return protocol.Response{}, base.ErrNoLeader
		}
		return n.local(ctx, r, req) // leadership just changed: let raft decide
	}
	info, ok := n.Layout().Node(leader)
	if !ok {
		return protocol.Response{}, base.ErrNoLeader
	}
	return n.fwd.To(ctx, info, req)
}

// Serve runs a request forwarded by another node, here and only here.
func (n *Node) Serve(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	if err := req.Validate(); err != nil {
		return protocol.Response{}, err
	}
	if h := n.cfg.Knobs.OnServe; h != nil {
		if err := h(string(req.Op)); err != nil {
			return protocol.Response{ServedBy: n.cfg.ID}, err
		}
	}
	r := n.replica(req.Group)
	if r == nil {
		return protocol.Response{ServedBy: n.cfg.ID}, &base.NotLeaderError{Group: req.Group}
	}
	if !servedLocally(req) && !r.isLeader() {
		return protocol.Response{ServedBy: n.cfg.ID}, r.notLeader()
	}
	return n.local(ctx, r, req)
}
