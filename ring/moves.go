package ring

import (
	"math"
	"sort"

	"github.com/ringkv/ringkv/base"
)

// Range is an arc of the hash space: the positions h with Start < h <= End,
// wrapping past the top when Start >= End (Start == End is the whole
// space).
type Range struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// Contains reports whether hash position h lies in the range.
func (r Range) Contains(h uint64) bool {
	if r.Start < r.End {
		return h > r.Start && h <= r.End
	}
	return h > r.Start || h <= r.End
}

// Size is the number of positions in the range, as a float (2^64 for the
// whole space).
func (r Range) Size() float64 {
	if r.Start == r.End {
		return space
	}
	return float64(r.End - r.Start) // uint64 arithmetic wraps
}

// Move is a range whose owner changes between two rings.
type Move struct {
	Range
	From base.GroupID `json:"from"`
	To   base.GroupID `json:"to"`
}

// Moves returns the ranges whose owner differs between old and new, in hash
// order, adjacent ranges with the same owners merged. Keys outside them keep
// their group.
func Moves(old, new *Ring) []Move {
	if len(old.points) == 0 || len(new.points) == 0 {
		return nil
	}
	// Between two consecutive tokens of either ring, both owners are
	// constant: each is the owner of the arc's end.
	seen := make(map[uint64]bool, len(old.points)+len(new.points))
	var bounds []uint64
	for _, ps := range [][]point{old.points, new.points} {
		for _, p := range ps {
			if !seen[p.token] {
				seen[p.token] = true
				bounds = append(bounds, p.token)
			}
		}
	}
	sort.Slice(bounds, func(i, j int) bool { return bounds[i] < bounds[j] })
	var out []Move
	for i, end := range bounds {
		start := bounds[(i+len(bounds)-1)%len(bounds)]
		from, _ := old.LookupHash(end)
		to, _ := new.LookupHash(end)
		if from == to {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == start && out[n-1].From == from && out[n-1].To == to {
			out[n-1].End = end
			continue
		}
		out = append(out, Move{Range: Range{Start: start, End: end}, From: from, To: to})
	}
	// The last arc may continue into the first across the top.
	if n := len(out); n > 1 && out[n-1].End == out[0].Start && out[n-1].From == out[0].From && out[n-1].To == out[0].To {
		out[0].Start = out[n-1].Start
		out = out[:n-1]
	}
	return out
}

// MovedShare is the fraction of the hash space the moves cover.
func MovedShare(moves []Move) float64 {
	var s float64
	for _, m := range moves {
		s += m.Size()
	}
	return s / space
}

// RangeIndex finds which of a set of disjoint ranges holds a position, in
// O(log n).
type RangeIndex struct {
	spans []span
}

// span is a range as inclusive bounds, with the range's index.
type span struct {
	lo, hi uint64
	i      int
}

// NewRangeIndex indexes rs, which must not overlap.
func NewRangeIndex(rs []Range) *RangeIndex {
	x := &RangeIndex{}
	for i, r := range rs {
		switch {
		case r.Start == r.End:
			x.spans = append(x.spans, span{0, math.MaxUint64, i})
		case r.Start < r.End:
			x.spans = append(x.spans, span{r.Start + 1, r.End, i})
		default: // wraps past the top
			if r.Start != math.MaxUint64 {
				x.spans = append(x.spans, span{r.Start + 1, math.MaxUint64, i})
			}
			x.spans = append(x.spans, span{0, r.End, i})
		}
	}
	sort.Slice(x.spans, func(a, b int) bool { return x.spans[a].lo < x.spans[b].lo })
	return x
}

// Find returns the index in rs of the range holding h, or -1.
func (x *RangeIndex) Find(h uint64) int {
	j := sort.Search(len(x.spans), func(j int) bool { return x.spans[j].lo > h }) - 1
	if j >= 0 && h <= x.spans[j].hi {
		return x.spans[j].i
	}
	return -1
}
