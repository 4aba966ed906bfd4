package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// HashRange is an arc of the ring's hash space: the positions h with
// Start < h <= End, wrapping past the top when Start >= End (Start == End
// is the whole space). Keys map to positions with Options.KeyHash.
type HashRange struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// span is a non-wrapping set of positions, bounds included.
type span struct{ lo, hi uint64 }

// spans splits r into non-wrapping spans.
func (r HashRange) spans() []span {
	switch {
	case r.Start == r.End:
		return []span{{0, math.MaxUint64}}
	case r.Start < r.End:
		return []span{{r.Start + 1, r.End}}
	case r.Start == math.MaxUint64:
		return []span{{0, r.End}}
	}
	return []span{{r.Start + 1, math.MaxUint64}, {0, r.End}}
}

// spanSet is a set of positions kept as sorted, disjoint, non-adjacent
// spans. The zero value is empty.
type spanSet []span

func spanSetOf(rs []HashRange) spanSet {
	var s spanSet
	for _, r := range rs {
		for _, sp := range r.spans() {
			s = s.union(sp)
		}
	}
	return s
}

// contains reports whether h is in the set, in O(log n).
func (s spanSet) contains(h uint64) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].lo > h }) - 1
	return i >= 0 && h <= s[i].hi
}

// union returns s with sp added.
func (s spanSet) union(sp span) spanSet {
	var out spanSet
	for _, x := range s {
		// Disjoint and not adjacent: keep apart.
		if (sp.lo > 0 && x.hi < sp.lo-1) || (sp.hi < math.MaxUint64 && x.lo > sp.hi+1) {
			out = append(out, x)
			continue
		}
		sp = span{min(sp.lo, x.lo), max(sp.hi, x.hi)}
	}
	out = append(out, sp)
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	return out
}

// minus returns s without the positions of sp.
func (s spanSet) minus(sp span) spanSet {
	var out spanSet
	for _, x := range s {
		if x.hi < sp.lo || x.lo > sp.hi {
			out = append(out, x)
			continue
		}
		if x.lo < sp.lo {
			out = append(out, span{x.lo, sp.lo - 1})
		}
		if x.hi > sp.hi {
			out = append(out, span{sp.hi + 1, x.hi})
		}
	}
	return out
}

// encode lays the set out as a uvarint count then 16 bytes per span.
func (s spanSet) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(s)))
	for _, x := range s {
		b = binary.BigEndian.AppendUint64(b, x.lo)
		b = binary.BigEndian.AppendUint64(b, x.hi)
	}
	return b
}

func decodeSpanSet(b []byte) (spanSet, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k)/16 || uint64(len(b)-k) != 16*n {
		return nil, fmt.Errorf("%w: fence set", ErrBadCommand)
	}
	b = b[k:]
	s := make(spanSet, n)
	for i := range s {
		s[i] = span{binary.BigEndian.Uint64(b[16*i:]), binary.BigEndian.Uint64(b[16*i+8:])}
		if s[i].lo > s[i].hi || (i > 0 && s[i].lo <= s[i-1].hi) {
			return nil, fmt.Errorf("%w: fence set out of order", ErrBadCommand)
		}
	}
	return s, nil
}
