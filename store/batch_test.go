package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestBatchEntryAppliesInOrderAtOneIndex(t *testing.T) {
	s := mustOpen(t)
	mustApply(t, s, 1, put("a", "old"))
	entry := EncodeBatch([][]byte{put("a", "new"), put("b", "1"), del("c"), cas("d", "x", 0), cas("a", "y", 1)})
	if _, err := DecodeBatch(entry); err == nil {
		t.Fatal("a batch touching one key twice was accepted")
	}
	entry = EncodeBatch([][]byte{cas("a", "new", 1), put("b", "1"), del("c"), cas("d", "x", 5)})
	res, err := s.ApplyBatch([]LogEntry{{Index: 2, Data: entry}})
	if err != nil {
		t.Fatal(err)
	}
	b := res[0].Batch
	if len(b) != 4 || !b[0].Applied || b[0].ModifyIndex != 2 || !b[1].Applied || !b[2].NotFound || !b[3].CASFailed {
		t.Fatalf("batch results %+v", b)
	}
	wantValue(t, s, "a", "new", 2)
	wantValue(t, s, "b", "1", 2)
	if s.KeyCount() != 2 || s.AppliedIndex() != 2 {
		t.Fatalf("keys %d, applied %d", s.KeyCount(), s.AppliedIndex())
	}
	// The same commands one per entry give the same data and root.
	o := mustOpen(t)
	mustApply(t, o, 1, put("a", "old"))
	for _, c := range [][]byte{cas("a", "new", 1), put("b", "1")} {
		if _, err := o.ApplyBatch([]LogEntry{{Index: 2, Data: EncodeBatch([][]byte{c})}}); err != nil {
			t.Fatal(err)
		}
		o.applied.Store(1) // both at index 2, as in the packed entry
	}
	if o.Root().Hash != s.Root().Hash {
		t.Fatal("a packed entry and its commands one by one give different roots")
	}
	// A malformed batch is a deterministic per-entry error, not a failure.
	res, err = s.ApplyBatch([]LogEntry{{Index: 3, Data: []byte{byte(OpBatch), 0, 2, 1, 9}}})
	if err != nil || !errors.Is(res[0].Err, ErrBadCommand) {
		t.Fatalf("malformed batch: %v, %+v", err, res[0])
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(EncodeBatch([][]byte{put("a", "1"), del("b"), cas("c", "x", 3)}))
	f.Add(EncodeBatch([][]byte{put("a", "1"), put("a", "2")}))
	f.Add([]byte{byte(OpBatch), 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeBatch(b)
		if err != nil {
			return
		}
		enc := make([][]byte, len(cmds))
		seen := map[string]bool{}
		for i, c := range cmds {
			if seen[string(c.Key)] || (c.Op != OpPut && c.Op != OpDelete) {
				t.Fatalf("accepted command %d: %+v", i, c)
			}
			seen[string(c.Key)] = true
			enc[i] = c.Encode()
		}
		again, err := DecodeBatch(EncodeBatch(enc))
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-decoding an accepted batch: %v", err)
		}
		for i := range again {
			if !bytes.Equal(again[i].Key, cmds[i].Key) || !bytes.Equal(again[i].Value, cmds[i].Value) {
				t.Fatalf("round trip changed command %d", i)
			}
		}
	})
}

func ExampleEncodeBatch() {
	cmds, _ := DecodeBatch(EncodeBatch([][]byte{
		Command{Op: OpPut, Key: []byte("a"), Value: []byte("1")}.Encode(),
		Command{Op: OpDelete, Key: []byte("b")}.Encode(),
	}))
	for _, c := range cmds {
		fmt.Println(c.Op, string(c.Key), string(c.Value))
	}
	// Output:
	// 1 a 1
	// 2 b
}

// The root is rehashed when asked for, not at every apply: asked for at
// every step or only at the end, it is the same, at the applied index, and
// a reader asking while entries apply sees a root of some applied index.
func TestRootIsRehashedWhenAsked(t *testing.T) {
	every, end := mustOpen(t), mustOpen(t)
	var seen []Root
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			seen = append(seen, every.Root())
		}
	}()
	for i := uint64(1); i <= 300; i++ {
		cmd := put(fmt.Sprintf("k%d", i%37), fmt.Sprint(i))
		if i%5 == 0 {
			cmd = del(fmt.Sprintf("k%d", (i+3)%37))
		}
		for _, s := range []*Store{every, end} {
			if _, err := s.ApplyBatch([]LogEntry{{Index: i, Data: cmd}}); err != nil {
				t.Fatal(err)
			}
		}
		if r := every.Root(); r.Index != i {
			t.Fatalf("root at %d after applying %d", r.Index, i)
		}
	}
	<-done
	if a, b := every.Root(), end.Root(); a != b || a.Index != 300 {
		t.Fatalf("root asked at every step %x@%d, at the end %x@%d", a.Hash, a.Index, b.Hash, b.Index)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Index < seen[i-1].Index {
			t.Fatalf("root went back from index %d to %d", seen[i-1].Index, seen[i].Index)
		}
	}
	// Reopened, the store computes the same root from its stored leaves.
	path := end.path
	end.Close()
	again, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Root() != every.Root() {
		t.Fatalf("reopened root %x@%d, want %x@%d", again.Root().Hash, again.Root().Index, every.Root().Hash, every.Root().Index)
	}
}
