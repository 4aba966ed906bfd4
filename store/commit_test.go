package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openDelayed(t *testing.T, path string, delay time.Duration) *Store {
	t.Helper()
	s, err := Open(path, Options{Group: 1, NoSync: true, MmapSize: 64 << 20, CommitDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// committedIndex opens a copy of the state file as it is on disk: what a
// process crash would leave.
func committedIndex(t *testing.T, path string) (applied uint64, keys int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(cp, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := uint64(1); i <= c.AppliedIndex(); i++ {
		if _, err := c.Get([]byte(fmt.Sprintf("k%d", i))); err != nil {
			t.Fatalf("the copy's applied index is %d but key k%d is missing: %v", c.AppliedIndex(), i, err)
		}
	}
	if _, err := c.Get([]byte(fmt.Sprintf("k%d", c.AppliedIndex()+1))); err == nil {
		t.Fatalf("the copy holds k%d, past its applied index %d", c.AppliedIndex()+1, c.AppliedIndex())
	}
	return c.AppliedIndex(), int(c.KeyCount())
}

// With a commit delay, applied entries wait in an open transaction; any
// read sees them (a point read without committing them), the file holds the applied index with exactly its data,
// a snapshot covers the applied index, and Close commits them.
func TestDeferredCommitIsInvisibleToReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openDelayed(t, path, time.Hour)
	for i := uint64(1); i <= 10; i++ {
		mustApply(t, s, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	if got, _ := committedIndex(t, path); got != 0 {
		t.Fatalf("with an hour's delay, the file already holds index %d", got)
	}
	wantValue(t, s, "k10", "v", 10) // read in the open transaction
	if got, _ := committedIndex(t, path); got != 0 {
		t.Fatalf("a point read committed: the file holds index %d", got)
	}
	if c, err := s.Commit(); err != nil || c.Index != 10 {
		t.Fatalf("Commit() = %+v, %v; want index 10", c, err)
	}
	if got, keys := committedIndex(t, path); got != 10 || keys != 10 {
		t.Fatalf("after Commit the file holds index %d with %d keys, want 10 and 10", got, keys)
	}
	for i := uint64(11); i <= 20; i++ {
		mustApply(t, s, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	if h := sn.Header(); h.Index != 20 {
		t.Fatalf("snapshot at %d, applied 20", h.Index)
	}
	r := mustOpen(t)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	wantValue(t, r, "k20", "v", 20)
	for i := uint64(21); i <= 25; i++ {
		mustApply(t, s, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, keys := committedIndex(t, path); got != 25 || keys != 25 {
		t.Fatalf("after Close the file holds index %d with %d keys", got, keys)
	}
}

// Without reads, the delay's timer commits; a long run of applies commits
// every maxPendingEntries entries.
func TestDeferredCommitHappensWithoutReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openDelayed(t, path, 20*time.Millisecond)
	defer s.Close()
	for i := uint64(1); i <= 5; i++ {
		mustApply(t, s, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if got, _ := committedIndex(t, path); got == 5 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("the applied entries were never committed without a read")
		case <-tick.C:
		}
	}
	l := openDelayed(t, filepath.Join(t.TempDir(), "long.db"), time.Hour)
	defer l.Close()
	for i := uint64(1); i <= maxPendingEntries+3; i++ {
		mustApply(t, l, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	if got, _ := committedIndex(t, l.path); got != maxPendingEntries {
		t.Fatalf("after %d applies with an hour's delay the file holds index %d, want %d", maxPendingEntries+3, got, maxPendingEntries)
	}
}

// Readers and the applier run concurrently (run with -race).
func TestDeferredCommitConcurrentReads(t *testing.T) {
	s := openDelayed(t, filepath.Join(t.TempDir(), "state.db"), 2*time.Millisecond)
	defer s.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				applied := s.AppliedIndex()
				if applied == 0 {
					continue
				}
				if _, err := s.Get([]byte(fmt.Sprintf("k%d", applied))); err != nil {
					t.Errorf("k%d applied but not readable: %v", applied, err)
					return
				}
			}
		}()
	}
	for i := uint64(1); i <= 500; i++ {
		mustApply(t, s, i, put(fmt.Sprintf("k%d", i), "v"))
	}
	close(stop)
	wg.Wait()
}
