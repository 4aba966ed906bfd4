package raftnode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// Plan previews change against the current ring: the moving ranges, and
// from each source group's leader the keys and bytes in them.
func (n *Node) Plan(ctx context.Context, change layout.RingChange, withRanges bool) (api.Plan, error) {
	cur := n.Layout().RingView()
	if cur == nil {
		return api.Plan{}, fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	nr, ideal, err := change.Next(cur)
	if err != nil {
		return api.Plan{}, err
	}
	moves := ring.Moves(cur, nr)
	p := api.Plan{Change: change.String(), Epoch: cur.Epoch(), NextEpoch: nr.Epoch(), Before: planGroups(cur), After: planGroups(nr),
		MovedShare: ring.MovedShare(moves), IdealShare: ideal}
	if withRanges {
		p.Ranges = moves
	}
	// One pass over each group: its keys in the ranges it gives away, per
	// range, and the rest.
	bySource := map[base.GroupID][]ring.Move{}
	for _, m := range moves {
		bySource[base.GroupID(m.From)] = append(bySource[base.GroupID(m.From)], m)
	}
	transfers := map[[2]base.GroupID]*api.Transfer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, 0)
	for _, g := range cur.Groups() {
		gid := base.GroupID(g)
		ms := bySource[gid]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ranges := make([]ring.Range, len(ms))
			for i, m := range ms {
				ranges[i] = m.Range
			}
			resp, err := n.do(ctx, protocol.Request{Op: protocol.OpRangeStats, Group: gid, Ranges: ranges})
			mu.Lock()
			defer mu.Unlock()
			if err == nil && len(resp.Tallies) != len(ms)+1 {
				err = fmt.Errorf("group %d answered %d tallies for %d ranges", gid, len(resp.Tallies), len(ms))
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("counting group %d's keys: %w", gid, err))
				return
			}
			for i, m := range ms {
				k := [2]base.GroupID{base.GroupID(m.From), base.GroupID(m.To)}
				t := transfers[k]
				if t == nil {
					t = &api.Transfer{From: k[0], To: k[1]}
					transfers[k] = t
				}
				t.Ranges++
				t.Share += m.Size() / math.Exp2(64)
				t.Keys += resp.Tallies[i].Keys
				t.Bytes += resp.Tallies[i].Bytes
				p.MovedKeys += resp.Tallies[i].Keys
				p.MovedBytes += resp.Tallies[i].Bytes
				p.TotalKeys += resp.Tallies[i].Keys
			}
			p.TotalKeys += resp.Tallies[len(ms)].Keys
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return api.Plan{}, errors.Join(errs...)
	}
	for _, t := range transfers {
		p.Transfers = append(p.Transfers, *t)
	}
	sort.Slice(p.Transfers, func(i, j int) bool {
		a, b := p.Transfers[i], p.Transfers[j]
		return a.From < b.From || a.From == b.From && a.To < b.To
	})
	return p, nil
}

func planGroups(r *ring.Ring) []api.PlanGroup {
	shares := r.Shares()
	var out []api.PlanGroup
	for _, g := range r.Groups() {
		out = append(out, api.PlanGroup{ID: base.GroupID(g), Weight: r.Weight(g), Share: shares[g]})
	}
	return out
}

// rangeStats counts the replica's keys and bytes in each of ranges, and
// last, all its other keys.
func rangeStats(st *store.Store, ranges []ring.Range) ([]store.Tally, error) {
	idx := ring.NewRangeIndex(ranges)
	rest := len(ranges)
	return st.TallyBy(func(k []byte) int {
		if i := idx.Find(ring.Hash(k)); i >= 0 {
			return i
		}
		return rest
	}, len(ranges)+1)
}
