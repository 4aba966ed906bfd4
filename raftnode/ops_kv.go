package raftnode

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/store"
)

// Node-to-node ops on a group's keys: writes, reads and commit waits.

// serveWrite puts or deletes a key through the group's log (or, async, at the leader's append).
func (n *Node) serveWrite(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	cmd := store.Command{Op: store.OpPut, Key: req.Key, Value: req.Value, HasCAS: req.HasCAS, CAS: req.CAS}
	if req.Op == protocol.OpDelete {
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
		if l := n.Layout(); (l.Migration == nil || !l.Migration.Sourcing(r.id)) && l.Restore == nil {
			if n.cfg.Knobs.OnAsyncWrite != nil {
				n.cfg.Knobs.OnAsyncWrite(r.id, req.Key)
			}
			at, err := r.applyAsync(ctx, cmd.Encode(), req.Key)
			r.asyncMu.RUnlock()
			if err != nil {
				return resp, err
			}
			idx := at.index + r.st.IndexOffset()
			if req.Op == protocol.OpDelete {
				idx = 0
			}
			resp.Write = &protocol.WriteResult{Key: req.Key, Index: idx, Group: r.id, RaftIndex: at.index, Async: true, RaftTerm: at.term}
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
	resp.Write = &protocol.WriteResult{Key: req.Key, Index: res.ModifyIndex, Group: r.id, RaftIndex: res.Index}
	return resp, nil
}

// serveRead gets a key or scans a page of keys, at the consistency asked.
func (n *Node) serveRead(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
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
	if req.Op == protocol.OpGet {
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
		resp.Entry = &protocol.KV{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Group: r.id}
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
	resp.Entries = make([]protocol.KV, len(es))
	for i, e := range es {
		resp.Entries[i] = protocol.KV{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Group: r.id}
	}
	return resp, nil
}

// serveWait waits until the group has committed an index of a term.
func (n *Node) serveWait(ctx context.Context, r *replica, req protocol.Request, resp protocol.Response) (protocol.Response, error) {
	if err := r.waitCommitted(ctx, req.Index, req.Term); err != nil {
		return resp, err
	}
	resp.RaftIndex = req.Index
	return resp, nil
}
