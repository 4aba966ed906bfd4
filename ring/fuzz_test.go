package ring

import (
	"errors"
	"testing"

	"github.com/ringkv/ringkv/base"
)

// A group alone on the ring has no weight to change: raising it has no
// other group to carve tokens from (this once indexed points[-1]).
func TestSetWeightOfTheOnlyGroup(t *testing.T) {
	r := mustRing(t, 1, 16)
	for _, w := range []int{2, MaxWeight} {
		if _, err := r.SetWeight(1, w); !errors.Is(err, ErrNoChange) {
			t.Fatalf("SetWeight(1, %d) on a one-group ring = %v, want ErrNoChange", w, err)
		}
	}
	heavy := New(16)
	heavy, err := heavy.AddGroup(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := heavy.SetWeight(1, 1); !errors.Is(err, ErrNoChange) {
		t.Fatalf("lowering the only group's weight = %v, want ErrNoChange", err)
	}
}

// FuzzChanges runs any sequence of ring changes, starting from rings of
// one to three groups: none may panic, and every ring a change returns
// must survive its own serialised form and own every position.
func FuzzChanges(f *testing.F) {
	f.Add([]byte{0, 2, 1, 2})                         // one group, raise its weight
	f.Add([]byte{1, 0, 4, 1, 1, 4, 3, 2, 2, 2})       // add, remove, reweight
	f.Add([]byte{2, 1, 255, 64, 2, 3, 0, 0, 1, 9})    // absurd ids and weights
	f.Add([]byte{0, 2, 1, 0, 2, 1, 0, 0, 0, 0, 1, 1}) // remove the last group
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 || len(ops) > 64 {
			return
		}
		r := mustRing(t, 1+int(ops[0])%3, 4)
		for i := 1; i+2 < len(ops); i += 3 {
			id, w := base.GroupID(ops[i+1]%8), int(ops[i+2])%(MaxWeight+2)
			var next *Ring
			var err error
			switch ops[i] % 3 {
			case 0:
				next, err = r.AddGroup(id, w)
			case 1:
				next, err = r.RemoveGroup(id)
			case 2:
				next, err = r.SetWeight(id, w)
			}
			if err != nil {
				continue
			}
			back, err := FromState(next.State())
			if err != nil {
				t.Fatalf("op %d: the ring a change returned does not rebuild: %v", i, err)
			}
			if len(back.Groups()) == 0 {
				t.Fatalf("op %d: a change left the ring empty", i)
			}
			for _, h := range []uint64{0, 1 << 63, ^uint64(0)} {
				if _, err := back.LookupHash(h); err != nil {
					t.Fatalf("op %d: position %d has no owner: %v", i, h, err)
				}
			}
			r = next
		}
	})
}
