package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

type entry struct {
	hash  uint64
	key   string
	value string
	index uint64
}

func (e entry) digest() Digest { return EntryDigest([]byte(e.key), []byte(e.value), e.index) }

func entries(n int, seed uint64) []entry {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]entry, n)
	for i := range out {
		out[i] = entry{hash: rng.Uint64(), key: fmt.Sprintf("k%d", i), value: fmt.Sprintf("v%d", i), index: uint64(i + 1)}
	}
	return out
}

func mustTree(t testing.TB, depth int, es []entry) *Tree {
	t.Helper()
	tr, err := NewTree(depth)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		tr.Toggle(e.hash, e.digest())
	}
	return tr
}

func TestRootIndependentOfOrder(t *testing.T) {
	es := entries(2000, 1)
	a := mustTree(t, 10, es)
	shuffled := append([]entry(nil), es...)
	rand.New(rand.NewPCG(2, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := mustTree(t, 10, shuffled)
	if a.Root() != b.Root() {
		t.Fatal("same entries in another order give another root")
	}
	empty, _ := NewTree(10)
	if a.Root() == empty.Root() {
		t.Fatal("root of 2000 entries equals the empty root")
	}
}

func TestToggleIsReversible(t *testing.T) {
	es := entries(100, 3)
	tr := mustTree(t, 8, es)
	before := tr.Root()
	// Replace an entry (old digest out, new in), then put it back.
	e := es[42]
	newer := entry{hash: e.hash, key: e.key, value: "changed", index: 999}
	tr.Toggle(e.hash, e.digest())
	tr.Toggle(e.hash, newer.digest())
	if tr.Root() == before {
		t.Fatal("changing a value did not change the root")
	}
	tr.Toggle(e.hash, newer.digest())
	tr.Toggle(e.hash, e.digest())
	if tr.Root() != before {
		t.Fatal("reverting the change did not restore the root")
	}
}

// Between two reads of the root a tree may take any number of toggles
// (a group that takes writes and is never asked for its root): what it
// keeps for the next read stays within its leaves, and every read,
// however the toggles and reads interleave, gives the root that a tree
// rebuilt from the same leaves has.
func TestManyTogglesBetweenReads(t *testing.T) {
	es := entries(50_000, 4)
	tr := mustTree(t, 6, nil)
	for round, e := range es {
		tr.Toggle(e.hash, e.digest())
		if len(tr.dirty) > tr.Leaves() {
			t.Fatalf("after %d toggles the tree lists %d nodes to rehash, more than its %d leaves", round+1, len(tr.dirty), tr.Leaves())
		}
		if round%7919 == 0 || round == len(es)-1 {
			b, _ := tr.MarshalBinary()
			var fresh Tree
			if err := fresh.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if got, want := tr.Root(), fresh.Root(); got != want {
				t.Fatalf("after %d toggles the root is %x, a tree rebuilt from the same leaves has %x", round+1, got[:4], want[:4])
			}
		}
	}
	if want := mustTree(t, 6, es).Root(); tr.Root() != want {
		t.Fatal("reads between toggles changed the final root")
	}
}

func TestDigestCoversKeyValueAndIndex(t *testing.T) {
	base := EntryDigest([]byte("k"), []byte("v"), 1)
	for _, d := range []Digest{
		EntryDigest([]byte("k2"), []byte("v"), 1),
		EntryDigest([]byte("k"), []byte("v2"), 1),
		EntryDigest([]byte("k"), []byte("v"), 2),
		EntryDigest([]byte("kv"), nil, 1), // no ambiguity between key and value
	} {
		if d == base {
			t.Fatal("a different entry has the same digest")
		}
	}
}

func TestDiffFindsExactlyTheDifferingLeaves(t *testing.T) {
	const depth = 12
	es := entries(5000, 4)
	a := mustTree(t, depth, es)
	b := a.Clone()
	leaves, reads, err := Diff(a, b)
	if err != nil || len(leaves) != 0 || reads != 1 {
		t.Fatalf("equal trees: leaves %v, %d reads, %v; want none and 1 read", leaves, reads, err)
	}
	want := map[int]bool{}
	for _, i := range []int{7, 1234, 4000} {
		e := es[i]
		b.Toggle(e.hash, e.digest()) // b lost this entry
		want[b.Leaf(e.hash)] = true
	}
	leaves, reads, err = Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != len(want) {
		t.Fatalf("Diff found leaves %v, want %v", leaves, want)
	}
	for _, l := range leaves {
		if !want[l] {
			t.Fatalf("Diff reported leaf %d, which does not differ", l)
		}
	}
	// k differing leaves cost O(k log n) reads, not n.
	if max := 2 * len(want) * (depth + 1); reads > max {
		t.Fatalf("Diff read %d nodes for %d differing leaves, want at most %d", reads, len(want), max)
	}
	for _, l := range leaves {
		lo, hi := b.LeafRange(l)
		if b.Leaf(lo) != l || b.Leaf(hi) != l || (l > 0 && b.Leaf(lo-1) == l) {
			t.Fatalf("LeafRange(%d) = [%x, %x] does not match Leaf", l, lo, hi)
		}
	}
}

func TestTreeRoundTrip(t *testing.T) {
	a := mustTree(t, 9, entries(700, 5))
	b, _ := a.MarshalBinary()
	var back Tree
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if back.Root() != a.Root() || back.Depth() != 9 {
		t.Fatal("tree changed in a round trip")
	}
	if _, err := NewTree(0); !errors.Is(err, ErrBadTree) {
		t.Errorf("NewTree(0) = %v", err)
	}
	if err := back.UnmarshalBinary(b[:len(b)-1]); !errors.Is(err, ErrBadTree) {
		t.Errorf("truncated tree accepted: %v", err)
	}
}

func FuzzTreeUnmarshal(f *testing.F) {
	tr, _ := NewTree(2)
	b, _ := tr.MarshalBinary()
	f.Add(b)
	f.Add([]byte{30})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr Tree
		if err := tr.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := tr.MarshalBinary()
		if string(again) != string(b) {
			t.Fatal("accepted tree does not round-trip")
		}
	})
}

func BenchmarkToggle(b *testing.B) {
	tr, _ := NewTree(DefaultTreeDepth)
	d := EntryDigest([]byte("k"), []byte("v"), 1)
	for i := 0; i < b.N; i++ {
		tr.Toggle(uint64(i)*0x9e3779b97f4a7c15, d)
	}
}

// countingSource counts the hashes a DiffLevels asks of a tree and the
// calls it makes, as a remote replica would see them.
type countingSource struct {
	*Tree
	calls, hashes int
}

func (c *countingSource) Nodes(level int, idx []int) ([]Digest, error) {
	c.calls++
	c.hashes += len(idx)
	return c.Tree.Nodes(level, idx)
}

func TestDiffLevelsMatchesDiffInDepthCalls(t *testing.T) {
	const depth = 12
	es := entries(5000, 4)
	a := mustTree(t, depth, es)
	b := a.Clone()
	sa, sb := &countingSource{Tree: a}, &countingSource{Tree: b}
	leaves, hashes, err := DiffLevels(sa, sb)
	if err != nil || len(leaves) != 0 || hashes != 1 || sa.calls != 1 {
		t.Fatalf("equal trees: %v, %d hashes, %d calls, %v; want nothing, 1 hash, 1 call", leaves, hashes, sa.calls, err)
	}
	for _, i := range []int{3, 999, 2500, 4999} {
		b.Toggle(es[i].hash, es[i].digest())
	}
	want, _, err := Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb = &countingSource{Tree: a}, &countingSource{Tree: b}
	leaves, hashes, err = DiffLevels(sa, sb)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != len(want) {
		t.Fatalf("DiffLevels found %v, Diff %v", leaves, want)
	}
	for i := range want {
		if leaves[i] != want[i] {
			t.Fatalf("DiffLevels found %v, Diff %v", leaves, want)
		}
	}
	if sa.calls > depth+1 || hashes > 2*len(want)*(depth+1) || sa.hashes != hashes {
		t.Fatalf("DiffLevels: %d calls, %d hashes for %d leaves", sa.calls, hashes, len(want))
	}
	if _, err := a.Nodes(3, []int{8}); err == nil {
		t.Fatal("Nodes answered for a node outside its level")
	}
}
