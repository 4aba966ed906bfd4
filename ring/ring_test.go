package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringkv/ringkv/base"
)

// MustRing builds a ring of equal-weight groups 1..n.
func mustRing(t testing.TB, n, vnodes int) *Ring {
	t.Helper()
	r := New(vnodes)
	for i := 1; i <= n; i++ {
		var err error
		if r, err = r.AddGroup(base.GroupID(i), 1); err != nil {
			t.Fatalf("AddGroup(%d): %v", i, err)
		}
	}
	return r
}

func randomKeys(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, 8+rng.IntN(24))
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		keys[i] = k
	}
	return keys
}

func counts(t testing.TB, r *Ring, keys [][]byte) map[base.GroupID]int {
	t.Helper()
	c := map[base.GroupID]int{}
	for _, k := range keys {
		g, err := r.Lookup(k)
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		c[g]++
	}
	return c
}

func TestHashIsStable(t *testing.T) {
	// Fixed vectors: a change here re-routes every key of every cluster.
	tests := []struct {
		key  string
		want uint64
	}{
		{"", 0xf52a15e9a9b5e89b},
		{"hello", 0x16fe05a1c75bcd0f},
		{"user/42", 0x13a5a03ebd0b0a71},
	}
	for _, tt := range tests {
		if got := Hash([]byte(tt.key)); got != tt.want {
			t.Errorf("Hash(%q) = %#x, want %#x", tt.key, got, tt.want)
		}
	}
}

func TestEqualGroupsHoldFairShare(t *testing.T) {
	keys := randomKeys(1, 100_000)
	for n := 3; n <= 16; n++ {
		r := mustRing(t, n, DefaultVNodes)
		c := counts(t, r, keys)
		fair := float64(len(keys)) / float64(n)
		for g := 1; g <= n; g++ {
			got := float64(c[base.GroupID(g)])
			if got < 0.9*fair || got > 1.1*fair {
				t.Errorf("%d groups: group %d holds %.0f keys, want %.0f ±10%%", n, g, got, fair)
			}
			if v := r.VNodeCount(base.GroupID(g)); v != DefaultVNodes {
				t.Errorf("%d groups: group %d has %d vnodes, want %d", n, g, v, DefaultVNodes)
			}
		}
	}
}

func TestWeightDoublesShare(t *testing.T) {
	r := mustRing(t, 3, DefaultVNodes)
	r, err := r.AddGroup(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	keys := randomKeys(2, 100_000)
	c := counts(t, r, keys)
	one := float64(c[1]+c[2]+c[3]) / 3
	ratio := float64(c[4]) / one
	if ratio < 1.8 || ratio > 2.2 {
		t.Errorf("weight-2 group holds %.2fx a weight-1 group's keys, want about 2", ratio)
	}
	if v := r.VNodeCount(4); v != 2*DefaultVNodes {
		t.Errorf("weight-2 vnodes = %d, want %d", v, 2*DefaultVNodes)
	}
}

func TestAddGroupMovesOnlyIntoNewGroup(t *testing.T) {
	keys := randomKeys(3, 100_000)
	for n := 1; n <= 15; n++ {
		before := mustRing(t, n, DefaultVNodes)
		after, err := before.AddGroup(base.GroupID(n+1), 1)
		if err != nil {
			t.Fatal(err)
		}
		if after.Epoch() != before.Epoch()+1 {
			t.Errorf("epoch %d after add, want %d", after.Epoch(), before.Epoch()+1)
		}
		moved := 0
		for _, k := range keys {
			a, _ := before.Lookup(k)
			b, _ := after.Lookup(k)
			if a != b {
				if b != base.GroupID(n+1) {
					t.Fatalf("n=%d: key moved from %d to %d, not to the new group", n, a, b)
				}
				moved++
			}
		}
		limit := 1.2 * float64(len(keys)) / float64(n+1)
		if float64(moved) > limit {
			t.Errorf("n=%d: %d keys moved, want at most %.0f", n, moved, limit)
		}
	}
}

func TestRemoveGroupMovesOnlyItsKeys(t *testing.T) {
	keys := randomKeys(4, 50_000)
	before := mustRing(t, 8, DefaultVNodes)
	after, err := before.RemoveGroup(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		a, _ := before.Lookup(k)
		b, _ := after.Lookup(k)
		if a != 5 && a != b {
			t.Fatalf("key of group %d moved to %d", a, b)
		}
		if b == 5 {
			t.Fatal("key still maps to removed group")
		}
	}
	if _, err := after.RemoveGroup(5); !errors.Is(err, ErrNoGroup) {
		t.Errorf("RemoveGroup twice: %v, want ErrNoGroup", err)
	}
}

func TestStateRoundTripRoutesIdentically(t *testing.T) {
	r := mustRing(t, 5, 32)
	back, err := FromState(r.State())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range randomKeys(5, 5000) {
		a, _ := r.Lookup(k)
		b, _ := back.Lookup(k)
		if a != b {
			t.Fatalf("Lookup(%x) = %d after round trip, want %d", k, b, a)
		}
	}
	if back.Epoch() != r.Epoch() {
		t.Errorf("epoch %d, want %d", back.Epoch(), r.Epoch())
	}
}

func TestBadInput(t *testing.T) {
	r := mustRing(t, 2, 8)
	if _, err := r.AddGroup(1, 1); !errors.Is(err, ErrGroupExists) {
		t.Errorf("AddGroup(existing) = %v", err)
	}
	if _, err := r.AddGroup(9, 0); !errors.Is(err, ErrBadWeight) {
		t.Errorf("AddGroup(weight 0) = %v", err)
	}
	if _, err := New(8).Lookup([]byte("x")); !errors.Is(err, ErrEmpty) {
		t.Errorf("Lookup on empty ring = %v", err)
	}
	st := r.State()
	st.Groups[1].Tokens[0] = st.Groups[0].Tokens[0]
	if _, err := FromState(st); !errors.Is(err, ErrBadState) {
		t.Errorf("FromState(duplicate token) = %v", err)
	}
}

func FuzzFromState(f *testing.F) {
	f.Add(uint8(3), uint8(4), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, groups, vnodes uint8, raw []byte) {
		st := State{VNodes: int(vnodes)}
		for g := 0; g < int(groups%8); g++ {
			gs := GroupState{ID: base.GroupID(g + 1), Weight: 1}
			for i := 0; i < int(vnodes); i++ {
				var b [8]byte
				copy(b[:], raw[min(len(raw), (g*int(vnodes)+i)%(len(raw)+1)):])
				gs.Tokens = append(gs.Tokens, binary.LittleEndian.Uint64(b[:])+uint64(i))
			}
			st.Groups = append(st.Groups, gs)
		}
		r, err := FromState(st)
		if err != nil {
			return
		}
		if len(r.Groups()) > 0 {
			if _, err := r.Lookup(raw); err != nil {
				t.Fatalf("Lookup on valid ring: %v", err)
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	r := mustRing(b, 16, DefaultVNodes)
	keys := randomKeys(6, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = r.Lookup(keys[i%len(keys)])
	}
}

// Moves lists exactly the positions whose owner changes, for every kind of
// change, and the share they cover is what the keys say.
func TestMovesMatchLookups(t *testing.T) {
	base := mustRing(t, 4, DefaultVNodes)
	added, err := base.AddGroup(5, 1)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := base.RemoveGroup(2)
	if err != nil {
		t.Fatal(err)
	}
	heavier, err := base.SetWeight(3, 2)
	if err != nil {
		t.Fatal(err)
	}
	lighter, err := heavier.SetWeight(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := randomKeys(7, 100000)
	for _, tc := range []struct {
		name     string
		old, new *Ring
	}{{"add", base, added}, {"remove", base, removed}, {"weight up", base, heavier}, {"weight down", heavier, lighter}} {
		moves := Moves(tc.old, tc.new)
		moved := 0
		for _, k := range keys {
			h := Hash(k)
			from, _ := tc.old.LookupHash(h)
			to, _ := tc.new.LookupHash(h)
			var in []Move
			for _, m := range moves {
				if m.Contains(h) {
					in = append(in, m)
				}
			}
			switch {
			case from == to && len(in) != 0:
				t.Fatalf("%s: key staying in group %d lies in move %+v", tc.name, from, in[0])
			case from != to && (len(in) != 1 || in[0].From != from || in[0].To != to):
				t.Fatalf("%s: key moving %d->%d lies in moves %+v", tc.name, from, to, in)
			}
			if from != to {
				moved++
			}
		}
		got, want := float64(moved)/float64(len(keys)), MovedShare(moves)
		if got < want*0.9-0.002 || got > want*1.1+0.002 {
			t.Fatalf("%s: %.4f of the keys moved, the moves cover %.4f of the space", tc.name, got, want)
		}
	}
}

// Changing a weight moves keys only into (up) or only out of (down) the
// group, and the group ends within 10% of its new share.
func TestSetWeight(t *testing.T) {
	base := mustRing(t, 4, DefaultVNodes)
	keys := randomKeys(9, 100000)
	before := counts(t, base, keys)
	up, err := base.SetWeight(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Moves(base, up) {
		if m.To != 2 {
			t.Fatalf("raising group 2's weight moved a range to %d", m.To)
		}
	}
	after := counts(t, up, keys)
	want := float64(len(keys)) * 3 / 6
	if d := float64(after[2]) - want; d > 0.1*want || d < -0.1*want {
		t.Fatalf("group 2 at weight 3 of 6 holds %d keys, want about %.0f (before: %d)", after[2], want, before[2])
	}
	down, err := up.SetWeight(2, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Moves(up, down) {
		if m.From != 2 {
			t.Fatalf("lowering group 2's weight moved a range from %d", m.From)
		}
	}
	back := counts(t, down, keys)
	want = float64(len(keys)) / 4
	for g, n := range back {
		if d := float64(n) - want; d > 0.1*want || d < -0.1*want {
			t.Fatalf("after lowering group 2 back, group %d holds %d keys, want about %.0f", g, n, want)
		}
	}
	if _, err := down.SetWeight(2, 1); !errors.Is(err, ErrNoChange) {
		t.Fatalf("same weight: %v", err)
	}
	if _, err := down.SetWeight(9, 1); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := down.SetWeight(2, MaxWeight+1); !errors.Is(err, ErrBadWeight) {
		t.Fatalf("weight too large: %v", err)
	}
}

// The index answers exactly as scanning the ranges would, including a
// range that wraps past the top and ones at the edges of the space.
func TestRangeIndexMatchesContains(t *testing.T) {
	old := mustRing(t, 3, 16)
	nw, err := old.AddGroup(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	wrap := Range{Start: math.MaxUint64 - 5, End: 3}
	var rs []Range
	for _, m := range Moves(old, nw) {
		if !m.Contains(0) && !m.Contains(math.MaxUint64) && !wrap.Contains(m.End) && !wrap.Contains(m.Start+1) {
			rs = append(rs, m.Range) // the ranges must not overlap
		}
	}
	rs = append(rs, wrap)
	x := NewRangeIndex(rs)
	probe := []uint64{0, 1, 3, 4, math.MaxUint64 - 5, math.MaxUint64 - 4, math.MaxUint64}
	for _, k := range randomKeys(3, 20000) {
		probe = append(probe, Hash(k))
	}
	for _, r := range rs {
		probe = append(probe, r.Start, r.Start+1, r.End, r.End+1)
	}
	for _, h := range probe {
		want := -1
		for i, r := range rs {
			if r.Contains(h) {
				want = i
			}
		}
		if got := x.Find(h); got != want {
			t.Fatalf("Find(%#x) = %d, want %d", h, got, want)
		}
	}
	if got := NewRangeIndex([]Range{{Start: 7, End: 7}}).Find(12345); got != 0 {
		t.Fatalf("the whole space: Find = %d", got)
	}
}

// After groups leave, the rest still hold their weight's share within 10%,
// and a long run of changes neither unbalances the ring nor piles up
// tokens.
func TestBalanceSurvivesRemovalsAndCycles(t *testing.T) {
	keys := randomKeys(11, 100_000)
	check := func(what string, r *Ring) {
		t.Helper()
		total := 0
		for _, g := range r.Groups() {
			total += r.Weight(g)
		}
		c := counts(t, r, keys)
		for _, g := range r.Groups() {
			want := float64(len(keys)) * float64(r.Weight(g)) / float64(total)
			if d := float64(c[g]) - want; d > 0.1*want || d < -0.1*want {
				t.Fatalf("%s: group %d (weight %d) holds %d keys, want %.0f±10%%", what, g, r.Weight(g), c[g], want)
			}
		}
		if n := len(r.points); n > 3*total*r.VNodes() {
			t.Fatalf("%s: %d tokens for a total weight of %d", what, n, total)
		}
	}
	r := mustRing(t, 6, DefaultVNodes)
	for _, id := range []base.GroupID{2, 5, 1} {
		var err error
		if r, err = r.RemoveGroup(id); err != nil {
			t.Fatal(err)
		}
		check("removing groups", r)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	next := base.GroupID(7)
	for step := 0; step < 60; step++ {
		var err error
		gs := r.Groups()
		switch op := rng.IntN(3); {
		case op == 0 || len(gs) < 3:
			r, err = r.AddGroup(next, 1+rng.IntN(3))
			next++
		case op == 1:
			r, err = r.RemoveGroup(gs[rng.IntN(len(gs))])
		default:
			g := gs[rng.IntN(len(gs))]
			w := 1 + rng.IntN(3)
			if w == r.Weight(g) {
				w = w%3 + 1
			}
			r, err = r.SetWeight(g, w)
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		check(fmt.Sprintf("step %d", step), r)
	}
	if _, err := mustRing(t, 1, 8).RemoveGroup(1); !errors.Is(err, ErrBadState) {
		t.Fatalf("removing the last group: %v", err)
	}
}
