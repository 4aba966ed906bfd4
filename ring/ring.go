package ring

import (
	"fmt"
	"math"
	"sort"

	"github.com/ringkv/ringkv/base"
)

// DefaultVNodes is the number of virtual nodes per unit of weight.
const DefaultVNodes = 128

// MaxWeight bounds a group's weight.
const MaxWeight = 64

// maxTokens bounds one group's tokens in a serialised ring. A group starts
// with weight times the vnodes per weight; later changes hand it ranges of
// other groups.
const maxTokens = 1 << 20

// space is the size of the hash space, 2^64, as a float.
const space = float64(1 << 63 * 2.0)

// GroupState is one group's entry in a serialised ring.
type GroupState struct {
	ID     base.GroupID `json:"id"`
	Weight int          `json:"weight"`
	Tokens []uint64     `json:"tokens"`
}

// State is the serialisable form of a Ring, replicated by the metadata group.
type State struct {
	Epoch  uint64       `json:"epoch"`
	VNodes int          `json:"vnodes_per_weight"`
	Groups []GroupState `json:"groups"`
}

type point struct {
	token uint64
	group base.GroupID
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
func (r *Ring) Groups() []base.GroupID {
	ids := make([]base.GroupID, len(r.groups))
	for i, g := range r.groups {
		ids[i] = g.ID
	}
	return ids
}

// Weight returns a group's weight, or 0 when it is not on the ring.
func (r *Ring) Weight(id base.GroupID) int {
	if g := r.group(id); g != nil {
		return g.Weight
	}
	return 0
}

// VNodeCount returns how many tokens a group holds.
func (r *Ring) VNodeCount(id base.GroupID) int {
	if g := r.group(id); g != nil {
		return len(g.Tokens)
	}
	return 0
}

func (r *Ring) group(id base.GroupID) *GroupState {
	i := sort.Search(len(r.groups), func(i int) bool { return r.groups[i].ID >= id })
	if i < len(r.groups) && r.groups[i].ID == id {
		return &r.groups[i]
	}
	return nil
}

// Lookup returns the group owning key, in O(log V).
func (r *Ring) Lookup(key []byte) (base.GroupID, error) {
	return r.LookupHash(Hash(key))
}

// LookupHash returns the group owning hash position h.
func (r *Ring) LookupHash(h uint64) (base.GroupID, error) {
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
func (r *Ring) Shares() map[base.GroupID]float64 {
	owned := r.owned()
	out := make(map[base.GroupID]float64, len(owned))
	for id, o := range owned {
		out[id] = o / space
	}
	return out
}

// owned returns the amount of hash space owned by each group.
func (r *Ring) owned() map[base.GroupID]float64 {
	out := make(map[base.GroupID]float64, len(r.groups))
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
	seen := make(map[base.GroupID]bool, len(st.Groups))
	for _, g := range st.Groups {
		if seen[g.ID] || g.ID == 0 {
			return nil, fmt.Errorf("%w: group id %d repeated or zero", ErrBadState, g.ID)
		}
		seen[g.ID] = true
		if g.Weight < 1 || g.Weight > MaxWeight {
			return nil, fmt.Errorf("%w: group %d weight %d", ErrBadState, g.ID, g.Weight)
		}
		if len(g.Tokens) < 1 || len(g.Tokens) > maxTokens {
			return nil, fmt.Errorf("%w: group %d has %d tokens (1 to %d)", ErrBadState, g.ID, len(g.Tokens), maxTokens)
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
// each of its ranges goes to the group then furthest below its fair share,
// largest range first, so the others stay balanced.
func (r *Ring) RemoveGroup(id base.GroupID) (*Ring, error) {
	g := r.group(id)
	if g == nil {
		return nil, fmt.Errorf("%w: %d", ErrNoGroup, id)
	}
	if len(r.groups) == 1 {
		return nil, fmt.Errorf("%w: group %d is the last one", ErrBadState, id)
	}
	return r.giveAway(id, g.Tokens, 0)
}

// giveAway returns a ring where the given tokens of group id belong to the
// other groups, and id has weight (0: id leaves the ring). Each token's
// range goes, largest first, to the group furthest below its fair share
// under the new weights; only keys in those ranges change owner.
func (r *Ring) giveAway(id base.GroupID, drop []uint64, weight int) (*Ring, error) {
	dropped := make(map[uint64]bool, len(drop))
	for _, t := range drop {
		dropped[t] = true
	}
	total := weight
	for _, g := range r.groups {
		if g.ID != id {
			total += g.Weight
		}
	}
	owned := r.owned()
	deficit := map[base.GroupID]float64{}
	for _, g := range r.groups {
		if g.ID != id {
			deficit[g.ID] = space*float64(g.Weight)/float64(total) - owned[g.ID]
		}
	}
	type tr struct {
		token uint64
		size  float64
	}
	var give []tr
	for i, p := range r.points {
		if dropped[p.token] {
			give = append(give, tr{p.token, rangeSize(r.points, i)})
		}
	}
	sort.Slice(give, func(i, j int) bool {
		if give[i].size != give[j].size {
			return give[i].size > give[j].size
		}
		return give[i].token < give[j].token
	})
	gained := map[base.GroupID][]uint64{}
	for _, t := range give {
		var to base.GroupID
		best := math.Inf(-1)
		for _, g := range r.groups { // ascending ids: ties go to the lowest
			if d, ok := deficit[g.ID]; ok && d > best {
				best, to = d, g.ID
			}
		}
		deficit[to] -= t.size
		gained[to] = append(gained[to], t.token)
	}
	st := r.State()
	out := st.Groups[:0]
	for _, g := range st.Groups {
		if g.ID == id {
			if weight == 0 {
				continue
			}
			kept := g.Tokens[:0]
			for _, t := range g.Tokens {
				if !dropped[t] {
					kept = append(kept, t)
				}
			}
			g.Tokens, g.Weight = kept, weight
		}
		g.Tokens = append(g.Tokens, gained[g.ID]...)
		out = append(out, g)
	}
	st.Groups = out
	st.Epoch++
	return fromChange(st)
}

// fromChange builds the ring a change that hands ranges over produced,
// first dropping every token whose clockwise successor belongs to the same
// group: the two ranges merge without any key changing owner, so repeated
// changes do not pile up tokens.
func fromChange(st State) (*Ring, error) {
	r, err := FromState(st)
	if err != nil || len(r.groups) < 2 {
		return r, err // a lone group keeps its tokens: each is redundant
	}
	redundant := map[uint64]bool{}
	for i, p := range r.points {
		if next := r.points[(i+1)%len(r.points)]; next.group == p.group && next.token != p.token {
			redundant[p.token] = true
		}
	}
	if len(redundant) == 0 {
		return r, nil
	}
	for i := range st.Groups {
		kept := st.Groups[i].Tokens[:0:0]
		for _, t := range st.Groups[i].Tokens {
			if !redundant[t] {
				kept = append(kept, t)
			}
		}
		st.Groups[i].Tokens = kept
	}
	return FromState(st)
}

// AddGroup returns a ring with group id added at weight. The new group's
// tokens are cut from the ranges of the groups owning most above their new
// fair share, so afterwards every group owns close to weight/total of the
// space and the only keys that change owner are those moving to id.
// The result depends only on r, id and weight.
func (r *Ring) AddGroup(id base.GroupID, weight int) (*Ring, error) {
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
func (r *Ring) SetWeight(id base.GroupID, weight int) (*Ring, error) {
	g := r.group(id)
	switch {
	case g == nil:
		return nil, fmt.Errorf("%w: %d", ErrNoGroup, id)
	case weight < 1 || weight > MaxWeight:
		return nil, fmt.Errorf("%w: %d", ErrBadWeight, weight)
	case weight == g.Weight:
		return nil, fmt.Errorf("%w: group %d already has weight %d", ErrNoChange, id, weight)
	case len(r.groups) == 1:
		// A lone group owns the whole space at any weight, and there is
		// no other group to carve new tokens from.
		return nil, fmt.Errorf("%w: group %d is the only group on the ring; its weight decides nothing", ErrNoChange, id)
	}
	if weight < g.Weight {
		return r.giveAway(id, r.smallest(id, weight, g.Weight), weight)
	}
	st := r.State()
	for i := range st.Groups {
		if st.Groups[i].ID == id {
			st.Groups[i].Tokens = append(st.Groups[i].Tokens, r.carveTokens(id, weight, (weight-g.Weight)*r.vnodes)...)
			st.Groups[i].Weight = weight
		}
	}
	st.Epoch++
	return FromState(st)
}

// smallest returns the tokens of group id heading its smallest ranges,
// enough of them that giving them away brings its share from weight from
// down to weight to (ties broken by token, so the result depends only on
// the ring).
func (r *Ring) smallest(id base.GroupID, to, from int) []uint64 {
	type tr struct {
		token uint64
		size  float64
	}
	var mine []tr
	var owned float64
	for i, p := range r.points {
		if p.group == id {
			mine = append(mine, tr{p.token, rangeSize(r.points, i)})
			owned += mine[len(mine)-1].size
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if mine[i].size != mine[j].size {
			return mine[i].size < mine[j].size
		}
		return mine[i].token < mine[j].token
	})
	total := 0
	for _, g := range r.groups {
		total += g.Weight
	}
	target := space * float64(to) / float64(total-from+to)
	var out []uint64
	for _, t := range mine[:len(mine)-1] { // keep at least one range
		if owned-t.size < target {
			break
		}
		owned -= t.size
		out = append(out, t.token)
	}
	return out
}

// evenTokens spreads n tokens evenly, rotated by a hash of the group id.
func evenTokens(id base.GroupID, n int) []uint64 {
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
func (r *Ring) carveTokens(id base.GroupID, weight, n int) []uint64 {
	total := weight
	for _, g := range r.groups {
		if g.ID != id {
			total += g.Weight
		}
	}
	owned := r.owned()
	target := space*float64(weight)/float64(total) - owned[id]
	excess := make(map[base.GroupID]float64, len(owned))
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
		var donor base.GroupID
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
		// The new token must fall strictly inside the range: float64
		// cannot tell a large range's size from its size minus one.
		gap := points[bi].token - prev - 1 // wraps to the whole space for a lone point
		step := gap
		if take < float64(gap) {
			step = max(uint64(take), 1)
		}
		tok := prev + step
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
