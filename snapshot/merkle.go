package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Digest is a SHA-256 hash.
type Digest [sha256.Size]byte

// Tree bounds.
const (
	MinTreeDepth     = 1
	MaxTreeDepth     = 20
	DefaultTreeDepth = 12
)

// ErrBadTree is returned for a malformed serialised tree.
var ErrBadTree = errors.New("snapshot: malformed merkle tree")

// Tree is a Merkle tree over the key-hash space of one group. Leaf i covers
// key hashes whose top depth bits equal i; its hash is the XOR of the
// digests of the entries in it, so it can be updated in O(1) when one entry
// changes, independently of the order in which entries arrived. An inner
// node is the SHA-256 of its two children. Two replicas holding the same
// entries therefore have the same root, whatever their history.
//
// A Tree is not safe for concurrent use.
type Tree struct {
	depth int
	// dirty holds nodes whose parents must be recomputed before the next
	// read: toggles only touch leaves, and a batch of them settles once.
	// isDirty marks the nodes listed there, so that a leaf toggled many
	// times before a read is listed once: however many writes apply
	// between two reads of the root, dirty holds at most every leaf.
	dirty   []int
	isDirty []bool
	// nodes is the complete binary tree in level order: nodes[0] is the
	// root and the children of node n are 2n+1 and 2n+2; leaves are the
	// last 1<<depth nodes.
	nodes []Digest
}

// NewTree returns the tree of an empty key space.
func NewTree(depth int) (*Tree, error) {
	if depth < MinTreeDepth || depth > MaxTreeDepth {
		return nil, fmt.Errorf("%w: depth %d outside [%d, %d]", ErrBadTree, depth, MinTreeDepth, MaxTreeDepth)
	}
	t := &Tree{depth: depth, nodes: make([]Digest, 1<<(depth+1)-1)}
	t.rebuild()
	return t, nil
}

// KeyHash places a key in the tree's key-hash space: the first 8 bytes of
// its SHA-256, the same on every platform.
func KeyHash(key []byte) uint64 {
	sum := sha256.Sum256(key)
	return binary.BigEndian.Uint64(sum[:8])
}

// EntryDigest is the digest of one stored entry: it covers the key, the
// value and the modify index.
func EntryDigest(key, value []byte, modifyIndex uint64) Digest {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(key)))
	h.Write(n[:])
	h.Write(key)
	binary.BigEndian.PutUint64(n[:], uint64(len(value)))
	h.Write(n[:])
	h.Write(value)
	binary.BigEndian.PutUint64(n[:], modifyIndex)
	h.Write(n[:])
	var d Digest
	h.Sum(d[:0])
	return d
}

// Depth returns the number of levels below the root.
func (t *Tree) Depth() int { return t.depth }

// Leaves returns the number of leaves.
func (t *Tree) Leaves() int { return 1 << t.depth }

// Leaf returns the leaf covering keyHash.
func (t *Tree) Leaf(keyHash uint64) int { return int(keyHash >> (64 - t.depth)) }

// LeafRange returns the key-hash range [lo, hi] that leaf i covers.
func (t *Tree) LeafRange(i int) (lo, hi uint64) {
	shift := 64 - t.depth
	lo = uint64(i) << shift
	return lo, lo + (1<<shift - 1)
}

func (t *Tree) leafNode(i int) int { return len(t.nodes) - t.Leaves() + i }

// Toggle adds an entry digest to the leaf of keyHash, or removes it if it
// is there: XOR is its own inverse. Replacing an entry is two toggles, the
// old digest and the new one. It returns the leaf. Inner nodes are
// recomputed at the next read, once for a whole batch of toggles.
func (t *Tree) Toggle(keyHash uint64, d Digest) int {
	leaf := t.Leaf(keyHash)
	n := t.leafNode(leaf)
	for i := range d {
		t.nodes[n][i] ^= d[i]
	}
	t.markDirty(n)
	return leaf
}

// markDirty lists node n in dirty unless it is there already.
func (t *Tree) markDirty(n int) {
	if t.isDirty == nil {
		t.isDirty = make([]bool, len(t.nodes))
	}
	if !t.isDirty[n] {
		t.isDirty[n] = true
		t.dirty = append(t.dirty, n)
	}
}

// LeafDigest returns leaf i's hash.
func (t *Tree) LeafDigest(i int) Digest { return t.nodes[t.leafNode(i)] }

// SetLeaf sets leaf i's hash (loading a stored tree).
func (t *Tree) SetLeaf(i int, d Digest) {
	n := t.leafNode(i)
	t.nodes[n] = d
	t.markDirty(n)
}

// settle recomputes the ancestors of dirty nodes, level by level.
func (t *Tree) settle() {
	// The nodes in dirty are all on one level, their parents on the next.
	for len(t.dirty) > 0 {
		for _, n := range t.dirty {
			t.isDirty[n] = false
		}
		var parents []int
		for _, n := range t.dirty {
			if n == 0 {
				continue
			}
			p := (n - 1) / 2
			if !t.isDirty[p] {
				t.isDirty[p] = true
				parents = append(parents, p)
			}
		}
		for _, p := range parents {
			t.nodes[p] = hashPair(t.nodes[2*p+1], t.nodes[2*p+2])
		}
		t.dirty = parents
	}
}

func hashPair(a, b Digest) Digest {
	var buf [2 * sha256.Size]byte
	copy(buf[:], a[:])
	copy(buf[sha256.Size:], b[:])
	return sha256.Sum256(buf[:])
}

// rebuild recomputes every inner node from the leaves.
func (t *Tree) rebuild() {
	for n := len(t.nodes) - t.Leaves() - 1; n >= 0; n-- {
		t.nodes[n] = hashPair(t.nodes[2*n+1], t.nodes[2*n+2])
	}
}

// Root returns the root hash.
func (t *Tree) Root() Digest {
	t.settle()
	return t.nodes[0]
}

// Node returns node index (0-based, left to right) of level (0 = root).
func (t *Tree) Node(level, index int) Digest {
	t.settle()
	return t.nodes[1<<level-1+index]
}

// Clone returns an independent copy.
func (t *Tree) Clone() *Tree {
	t.settle()
	return &Tree{depth: t.depth, nodes: append([]Digest(nil), t.nodes...)}
}

// MarshalBinary encodes the tree as its depth and leaves; inner nodes are
// recomputed on decoding.
func (t *Tree) MarshalBinary() ([]byte, error) {
	b := make([]byte, 1, 1+t.Leaves()*sha256.Size)
	b[0] = byte(t.depth)
	for i := 0; i < t.Leaves(); i++ {
		d := t.nodes[t.leafNode(i)]
		b = append(b, d[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes MarshalBinary's output.
func (t *Tree) UnmarshalBinary(b []byte) error {
	if len(b) < 1 {
		return fmt.Errorf("%w: empty", ErrBadTree)
	}
	nt, err := NewTree(int(b[0]))
	if err != nil {
		return err
	}
	if len(b) != 1+nt.Leaves()*sha256.Size {
		return fmt.Errorf("%w: %d bytes for depth %d", ErrBadTree, len(b), b[0])
	}
	for i := 0; i < nt.Leaves(); i++ {
		copy(nt.nodes[nt.leafNode(i)][:], b[1+i*sha256.Size:])
	}
	nt.rebuild()
	*t = *nt
	return nil
}

// NodeSource is a tree that can be asked for one node at a time, such as a
// remote replica's.
type NodeSource interface {
	Depth() int
	Node(level, index int) Digest
}

// Diff compares two trees of equal depth top-down, descending only into
// subtrees whose hashes differ. It returns the differing leaves in order
// and how many node hashes it read from each side: 1 for equal trees,
// O(k log n) for trees differing in k leaves.
func Diff(a, b NodeSource) (leaves []int, reads int, err error) {
	if a.Depth() != b.Depth() {
		return nil, 0, fmt.Errorf("%w: depths %d and %d", ErrBadTree, a.Depth(), b.Depth())
	}
	var walk func(level, index int)
	walk = func(level, index int) {
		reads++
		if a.Node(level, index) == b.Node(level, index) {
			return
		}
		if level == a.Depth() {
			leaves = append(leaves, index)
			return
		}
		walk(level+1, 2*index)
		walk(level+1, 2*index+1)
	}
	walk(0, 0)
	return leaves, reads, nil
}

// LevelSource is a tree that answers several nodes of one level at once,
// such as a remote replica's: one call per level instead of one per node.
type LevelSource interface {
	Depth() int
	Nodes(level int, indexes []int) ([]Digest, error)
}

// Nodes answers for a local tree.
func (t *Tree) Nodes(level int, indexes []int) ([]Digest, error) {
	out := make([]Digest, len(indexes))
	for i, ix := range indexes {
		if ix < 0 || ix >= 1<<level || level > t.depth {
			return nil, fmt.Errorf("%w: no node %d at level %d", ErrBadTree, ix, level)
		}
		out[i] = t.Node(level, ix)
	}
	return out, nil
}

// DiffLevels is Diff level by level: it asks each side once per level for
// the children of the nodes that differed above. It returns the differing
// leaves in order and how many hashes it read from each side.
func DiffLevels(a, b LevelSource) (leaves []int, hashes int, err error) {
	if a.Depth() != b.Depth() {
		return nil, 0, fmt.Errorf("%w: depths %d and %d", ErrBadTree, a.Depth(), b.Depth())
	}
	cur := []int{0}
	for level := 0; level <= a.Depth() && len(cur) > 0; level++ {
		ha, err := a.Nodes(level, cur)
		if err != nil {
			return nil, hashes, err
		}
		hb, err := b.Nodes(level, cur)
		if err != nil {
			return nil, hashes, err
		}
		if len(ha) != len(cur) || len(hb) != len(cur) {
			return nil, hashes, fmt.Errorf("%w: asked %d nodes, got %d and %d", ErrBadTree, len(cur), len(ha), len(hb))
		}
		hashes += len(cur)
		var next []int
		for i, ix := range cur {
			if ha[i] == hb[i] {
				continue
			}
			if level == a.Depth() {
				leaves = append(leaves, ix)
			} else {
				next = append(next, 2*ix, 2*ix+1)
			}
		}
		cur = next
	}
	return leaves, hashes, nil
}
