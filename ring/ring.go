package ring

import (
	"fmt"
	"math"
	"sort"
)

// GroupID identifies a Raft group. Group 0 is the metadata group and never
// appears on the ring.
type GroupID uint32

// DefaultVNodes is the number of virtual nodes per unit of weight.
const DefaultVNodes = 128

// MaxWeight bounds a group's weight.
const MaxWeight = 64

// space is the size of the hash space, 2^64, as a float.
const space = float64(1 << 63 * 2.0)

// GroupState is one group's entry in a serialised ring.
type GroupState struct {
	ID     GroupID  `json:"id"`
	Weight int      `json:"weight"`
	Tokens []uint64 `json:"tokens"`
}

// State is the serialisable form of a Ring, replicated by the metadata group.
type State struct {
	Epoch  uint64       `json:"epoch"`
	VNodes int          `json:"vnodes_per_weight"`
	Groups []GroupState `json:"groups"`
}

type point struct {
	token uint64
	group GroupID
}

// Ring is an immutable consistent-hash ring. It is safe for concurrent use.
type Ring struct {
	epoch  uint64
	vnodes int
	groups []GroupState // sorted by ID; Tokens sorted
	points []point      // sorted by token, unique
}

// New returns an empty ring with vnodes virtual nodes per unit of weight
// (DefaultVNodes when vnodes <= 0).
func New(vnodes int) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	return &Ring{vnodes: vnodes}
}

// Epoch counts the changes made to the ring since it was created.
func (r *Ring) Epoch() uint64 { return r.epoch }

// VNodes returns the virtual nodes per unit of weight.
func (r *Ring) VNodes() int { return r.vnodes }

// Groups returns the ids of the groups on the ring, ascending.
func (r *Ring) Groups() []GroupID {
	ids := make([]GroupID, len(r.groups))
	for i, g := range r.groups {
		ids[i] = g.ID
	}
	return ids
}

// Weight returns a group's weight, or 0 when it is not on the ring.
func (r *Ring) Weight(id GroupID) int {
	if g := r.group(id); g != nil {
		return g.Weight
	}
	return 0
}

// VNodeCount returns how many tokens a group holds.
func (r *Ring) VNodeCount(id GroupID) int {
	if g := r.group(id); g != nil {
		return len(g.Tokens)
	}
	return 0
}

func (r *Ring) group(id GroupID) *GroupState {
	i := sort.Search(len(r.groups), func(i int) bool { return r.groups[i].ID >= id })
	if i < len(r.groups) && r.groups[i].ID == id {
		return &r.groups[i]
	}
	return nil
}

// Lookup returns the group owning key, in O(log V).
func (r *Ring) Lookup(key []byte) (GroupID, error) {
	return r.LookupHash(Hash(key))
}

// LookupHash returns the group owning hash position h.
func (r *Ring) LookupHash(h uint64) (GroupID, error) {
	if len(r.points) == 0 {
		return 0, ErrEmpty
	}
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].token >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].group, nil
}

// Shares returns the fraction of the hash space each group owns.
func (r *Ring) Shares() map[GroupID]float64 {
	owned := r.owned()
	out := make(map[GroupID]float64, len(owned))
	for id, o := range owned {
		out[id] = o / space
	}
	return out
}

// owned returns the amount of hash space owned by each group.
func (r *Ring) owned() map[GroupID]float64 {
	out := make(map[GroupID]float64, len(r.groups))
	for _, g := range r.groups {
		out[g.ID] = 0
	}
	for i, p := range r.points {
		out[p.group] += rangeSize(r.points, i)
	}
	return out
}

// rangeSize is the size of (points[i-1], points[i]], wrapping around.
func rangeSize(points []point, i int) float64 {
	if len(points) == 1 {
		return space
	}
	prev := points[(i+len(points)-1)%len(points)].token
	return float64(points[i].token - prev) // uint64 arithmetic wraps
}

// State returns a deep copy of the ring in serialisable form.
func (r *Ring) State() State {
	st := State{Epoch: r.epoch, VNodes: r.vnodes, Groups: make([]GroupState, len(r.groups))}
	for i, g := range r.groups {
		st.Groups[i] = GroupState{ID: g.ID, Weight: g.Weight, Tokens: append([]uint64(nil), g.Tokens...)}
	}
	return st
}

// FromState rebuilds a ring from its serialised form, checking that it is
// consistent (weights in range, token counts matching weights, no token held
// twice).
func FromState(st State) (*Ring, error) {
	if st.VNodes <= 0 || st.VNodes > 4096 {
		return nil, fmt.Errorf("%w: vnodes %d", ErrBadState, st.VNodes)
	}
	r := &Ring{epoch: st.Epoch, vnodes: st.VNodes}
	seen := make(map[GroupID]bool, len(st.Groups))
	for _, g := range st.Groups {
		if seen[g.ID] || g.ID == 0 {
			return nil, fmt.Errorf("%w: group id %d repeated or zero", ErrBadState, g.ID)
		}
		seen[g.ID] = true
		if g.Weight < 1 || g.Weight > MaxWeight {
			return nil, fmt.Errorf("%w: group %d weight %d", ErrBadState, g.ID, g.Weight)
		}
		if len(g.Tokens) != g.Weight*st.VNodes {
			return nil, fmt.Errorf("%w: group %d has %d tokens, want %d", ErrBadState, g.ID, len(g.Tokens), g.Weight*st.VNodes)
		}
		toks := append([]uint64(nil), g.Tokens...)
		sort.Slice(toks, func(i, j int) bool { return toks[i] < toks[j] })
		r.groups = append(r.groups, GroupState{ID: g.ID, Weight: g.Weight, Tokens: toks})
		for _, t := range toks {
			r.points = append(r.points, point{token: t, group: g.ID})
		}
	}
	sort.Slice(r.groups, func(i, j int) bool { return r.groups[i].ID < r.groups[j].ID })
	sort.Slice(r.points, func(i, j int) bool { return r.points[i].token < r.points[j].token })
	for i := 1; i < len(r.points); i++ {
		if r.points[i].token == r.points[i-1].token {
			return nil, fmt.Errorf("%w: token %d held twice", ErrBadState, r.points[i].token)
		}
	}
	return r, nil
}

// RemoveGroup returns a ring without group id. Only that group's keys move:
// each of its ranges joins the range of the next token clockwise.
func (r *Ring) RemoveGroup(id GroupID) (*Ring, error) {
	if r.group(id) == nil {
		return nil, fmt.Errorf("%w: %d", ErrNoGroup, id)
	}
	st := r.State()
	out := st.Groups[:0]
	for _, g := range st.Groups {
		if g.ID != id {
			out = append(out, g)
		}
	}
	st.Groups = out
	st.Epoch++
	return FromState(st)
}

// AddGroup returns a ring with group id added at weight. The new group's
// tokens are cut from the ranges of the groups owning most above their new
// fair share, so afterwards every group owns close to weight/total of the
// space and the only keys that change owner are those moving to id.
// The result depends only on r, id and weight.
func (r *Ring) AddGroup(id GroupID, weight int) (*Ring, error) {
	if id == 0 {
		return nil, fmt.Errorf("%w: group id 0 is reserved", ErrBadState)
	}
	if weight < 1 || weight > MaxWeight {
		return nil, fmt.Errorf("%w: %d", ErrBadWeight, weight)
	}
	if r.group(id) != nil {
		return nil, fmt.Errorf("%w: %d", ErrGroupExists, id)
	}
	n := weight * r.vnodes
	var tokens []uint64
	if len(r.points) == 0 {
		tokens = evenTokens(id, n)
	} else {
		tokens = r.carveTokens(id, weight, n)
	}
	st := r.State()
	st.Groups = append(st.Groups, GroupState{ID: id, Weight: weight, Tokens: tokens})
	st.Epoch++
	return FromState(st)
}

// SetWeight returns a ring where group id has the given weight. Raising it
// carves new tokens out of the other groups (only keys moving to id change
// owner); lowering it drops id's smallest ranges, each joining the range of
// the next token clockwise (only keys leaving id change owner).
func (r *Ring) SetWeight(id GroupID, weight int) (*Ring, error) {
	g := r.group(id)
	switch {
	case g == nil:
		return nil, fmt.Errorf("%w: %d", ErrNoGroup, id)
	case weight < 1 || weight > MaxWeight:
		return nil, fmt.Errorf("%w: %d", ErrBadWeight, weight)
	case weight == g.Weight:
		return nil, fmt.Errorf("%w: group %d already has weight %d", ErrNoChange, id, weight)
	}
	st := r.State()
	for i := range st.Groups {
		if st.Groups[i].ID != id {
			continue
		}
		if weight > g.Weight {
			st.Groups[i].Tokens = append(st.Groups[i].Tokens, r.carveTokens(id, weight, (weight-g.Weight)*r.vnodes)...)
		} else {
			st.Groups[i].Tokens = r.keepLargest(id, weight*r.vnodes)
		}
		st.Groups[i].Weight = weight
	}
	st.Epoch++
	return FromState(st)
}

// keepLargest returns the n tokens of group id heading its largest ranges
// (ties broken by token, so the result depends only on the ring).
func (r *Ring) keepLargest(id GroupID, n int) []uint64 {
	type tr struct {
		token uint64
		size  float64
	}
	var mine []tr
	for i, p := range r.points {
		if p.group == id {
			mine = append(mine, tr{p.token, rangeSize(r.points, i)})
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].size != mine[j].size {
			return mine[i].size > mine[j].size
		}
		return mine[i].token < mine[j].token
	})
	out := make([]uint64, n)
	for i := range out {
		out[i] = mine[i].token
	}
	return out
}

// evenTokens spreads n tokens evenly, rotated by a hash of the group id.
func evenTokens(id GroupID, n int) []uint64 {
	step := math.MaxUint64/uint64(n) + 1
	if n == 1 {
		step = 0
	}
	base := mix64(uint64(id))
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)*step
	}
	return out
}

// carveTokens places n more tokens for group id so that it reaches the
// share of the given weight (id may be new, or on the ring at a lower
// weight). The space comes from the other groups furthest above their new
// fair share, so only keys moving to id change owner.
func (r *Ring) carveTokens(id GroupID, weight, n int) []uint64 {
	total := weight
	for _, g := range r.groups {
		if g.ID != id {
			total += g.Weight
		}
	}
	owned := r.owned()
	target := space*float64(weight)/float64(total) - owned[id]
	excess := make(map[GroupID]float64, len(owned))
	for _, g := range r.groups {
		if g.ID != id {
			excess[g.ID] = owned[g.ID] - space*float64(g.Weight)/float64(total)
		}
	}
	points := append([]point(nil), r.points...)
	var taken float64
	tokens := make([]uint64, 0, n)
	for i := 0; i < n; i++ {
		need := (target - taken) / float64(n-i)
		// The existing group furthest above its fair share gives up space.
		var donor GroupID
		best := math.Inf(-1)
		for _, g := range r.groups {
			if e, ok := excess[g.ID]; ok && e > best {
				best, donor = e, g.ID
			}
		}
		// From its largest range.
		bi, bsize := -1, -1.0
		for j, p := range points {
			if p.group != donor {
				continue
			}
			if s := rangeSize(points, j); s > bsize {
				bi, bsize = j, s
			}
		}
		take := math.Min(need, math.Max(best, 1))
		if take > bsize-1 {
			take = bsize - 1
		}
		if take < 1 {
			take = 1
		}
		prev := points[(bi+len(points)-1)%len(points)].token
		if len(points) == 1 {
			prev = points[0].token
		}
		tok := prev + uint64(take)
		excess[donor] -= take
		taken += take
		tokens = append(tokens, tok)
		// Insert keeping points sorted.
		k := sort.Search(len(points), func(k int) bool { return points[k].token >= tok })
		points = append(points, point{})
		copy(points[k+1:], points[k:])
		points[k] = point{token: tok, group: id}
	}
	return tokens
}
