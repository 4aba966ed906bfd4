package reshard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/internal/fakemeta"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// fakeCluster holds each group's keys in memory and answers the moving
// ops as the groups' leaders would (fences refuse nothing here: the
// mover's ordering is what is checked); Record applies metadata commands
// with layout.Apply.
type fakeCluster struct {
	*fakemeta.Meta
	mu     sync.Mutex
	groups map[base.GroupID]map[string]string
	mod    map[string]uint64 // each key's modify index (1 for the first keys)
	fenced map[base.GroupID]bool
	phases []string
	// writeDuringCopy, when set, is written to the source during the
	// first copy: a change the mover must carry over after the fence.
	writeDuringCopy string
}

func newFake(t *testing.T, keys int) *fakeCluster {
	f := &fakeCluster{Meta: fakemeta.New(), fenced: map[base.GroupID]bool{},
		groups: map[base.GroupID]map[string]string{1: {}, 2: {}}, mod: map[string]uint64{}}
	n1 := layout.NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	for _, c := range []layout.Command{
		{Op: layout.OpInit, Node: &n1, Groups: 1, VNodes: 16, Replication: 1},
		{Op: layout.OpMigrateStart, Change: &layout.RingChange{Add: &layout.GroupWeight{Group: 2, Weight: 1}}},
	} {
		if err := f.Record(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	for i := range keys {
		f.groups[1][fmt.Sprintf("k%04d", i)] = fmt.Sprint(i)
	}
	return f
}

func (f *fakeCluster) LeadsMeta() bool                                        { return true }
func (f *fakeCluster) LeadsMetaCurrent(context.Context) (uint64, bool, error) { return 7, true, nil }
func (f *fakeCluster) Logger() *slog.Logger                                   { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func in(rs []ring.Range, key string) bool {
	h := ring.Hash([]byte(key))
	for _, r := range rs {
		if r.Contains(h) {
			return true
		}
	}
	return false
}

func (f *fakeCluster) Do(_ context.Context, req protocol.Request) (protocol.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.groups[req.Group]
	var resp protocol.Response
	if req.Term != 7 && req.Op != protocol.OpRangeScan {
		return resp, fmt.Errorf("%w: term %d", base.ErrConflict, req.Term)
	}
	switch req.Op {
	case protocol.OpRangeScan:
		// One page: every key in the ranges, the digest over keys and values.
		var keys []string
		for k := range g {
			if in(req.Ranges, k) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var d [32]byte
		page := &protocol.ScanPage{Keys: uint64(len(keys)), Index: 1}
		for _, k := range keys {
			x := sha256.Sum256([]byte(k + "=" + g[k]))
			for i := range d {
				d[i] ^= x[i]
			}
			page.Entries = append(page.Entries, store.MovedEntry{Key: []byte(k), Value: []byte(g[k]), ModifyIndex: max(f.mod[k], 1)})
		}
		page.Digest = hex.EncodeToString(d[:])
		resp.Scan = page
		if f.writeDuringCopy != "" && req.Group == 1 && !f.fenced[1] {
			// Written after this page was read, before the fence.
			g[f.writeDuringCopy], f.mod[f.writeDuringCopy] = "late", 5
		}
	case protocol.OpFence:
		f.fenced[req.Group] = true
		resp.RaftIndex = 2
	case protocol.OpUnfence:
		f.fenced[req.Group] = false
	case protocol.OpIngest:
		for _, e := range req.Entries {
			if e.Deleted {
				delete(g, string(e.Key))
			} else {
				g[string(e.Key)], f.mod[string(e.Key)] = string(e.Value), e.ModifyIndex
			}
		}
	case protocol.OpDrop:
		for k := range g {
			if in(req.Ranges, k) {
				delete(g, k)
				resp.Count++
			}
		}
	default:
		return resp, fmt.Errorf("%w: %s", base.ErrBadRequest, req.Op)
	}
	return resp, nil
}

// A ring change adding a group moves exactly the keys its ranges hold:
// copied, the changes made during the copy carried over after the fence,
// compared, flipped, dropped from the source, every phase recorded in
// order, and the new ring installed.
func TestMoverCarriesARingChangeOut(t *testing.T) {
	f := newFake(t, 300)
	m := f.Layout().Migration
	if m == nil || len(m.Transfers) == 0 {
		t.Fatal("no migration to carry out")
	}
	late := ""
	for i := 0; ; i++ {
		if k := fmt.Sprintf("late%d", i); in(m.Transfers[0].Ranges, k) {
			late = k
			break
		}
	}
	f.writeDuringCopy = late
	want := map[base.GroupID]map[string]string{1: {}, 2: {}}
	for k, v := range f.groups[1] {
		if in(m.Transfers[0].Ranges, k) {
			want[2][k] = v
		} else {
			want[1][k] = v
		}
	}
	want[2][late] = "late"
	var phases []string
	mv := New(f, Options{OnTransfer: func(_, _ base.GroupID, phase string) { phases = append(phases, phase) }})
	if err := mv.migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := f.Layout(); l.Migration != nil || len(l.Ring.Groups) != 2 {
		t.Fatalf("after the change: migration %v, %d groups on the ring", l.Migration, len(l.Ring.Groups))
	}
	if fmt.Sprint(phases) != fmt.Sprint([]string{layout.PhaseCopy, layout.PhaseFenced, layout.PhaseFlipped}) {
		t.Fatalf("phases %v", phases)
	}
	for g, keys := range want {
		if len(f.groups[g]) != len(keys) {
			t.Fatalf("group %d holds %d keys, want %d", g, len(f.groups[g]), len(keys))
		}
		for k, v := range keys {
			if f.groups[g][k] != v {
				t.Fatalf("group %d: %s = %q, want %q", g, k, f.groups[g][k], v)
			}
		}
	}
	if len(want[2]) < 2 || f.fenced[2] {
		t.Fatalf("the new group took %d keys, fenced %v", len(want[2]), f.fenced[2])
	}
}

// An aborted change is undone: the source takes its ranges back, and a
// new group is retired whole.
func TestMoverUndoesAnAbortedChange(t *testing.T) {
	f := newFake(t, 100)
	if err := f.Record(context.Background(), layout.Command{Op: layout.OpMigrateAbort}); err != nil {
		t.Fatal(err)
	}
	f.fenced[1] = true
	if err := New(f, Options{}).migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := f.Layout(); l.Migration != nil || len(l.Ring.Groups) != 1 || f.fenced[1] || len(f.groups[1]) != 100 {
		t.Fatalf("after the abort: migration %v, %d groups, source fenced %v with %d keys", l.Migration, len(l.Ring.Groups), f.fenced[1], len(f.groups[1]))
	}
}
