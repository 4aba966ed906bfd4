package placer

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/internal/fakemeta"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
)

// fakeCluster holds a layout that Record changes through layout.Apply, as
// the metadata group would, and counts the steps the placer asks for.
type fakeCluster struct {
	*fakemeta.Meta
	mu       sync.Mutex
	recorded []layout.Command
	steps    int
	aborts   int
	// stepsToEnd is how many steps a move takes; down names nodes that
	// do not answer.
	stepsToEnd int
	down       map[base.NodeID]bool
}

func node(id base.NodeID) *layout.NodeInfo {
	return &layout.NodeInfo{ID: id, HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
}

// twoNodes is a layout of two groups of one replica each, both on n1, and
// n2 just joined: the rule moves one group to n2.
func twoNodes(t *testing.T) *fakeCluster {
	f := &fakeCluster{Meta: fakemeta.New(), stepsToEnd: 3, down: map[base.NodeID]bool{}}
	for _, c := range []layout.Command{
		{Op: layout.OpInit, Node: node("n1"), Groups: 2, VNodes: 8, Replication: 1},
		{Op: layout.OpAddNode, Node: node("n2")},
	} {
		if err := f.Record(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	f.recorded = nil
	return f
}

func (f *fakeCluster) LeadsMeta() bool                                        { return true }
func (f *fakeCluster) LeadsMetaCurrent(context.Context) (bool, error)         { return true, nil }
func (f *fakeCluster) Evict(context.Context, base.NodeID) error               { return nil }
func (f *fakeCluster) ShortAfterRemoval(*layout.Layout, base.NodeID) []string { return nil }
func (f *fakeCluster) Logger() *slog.Logger                                   { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f *fakeCluster) Reachable(_ context.Context, id base.NodeID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down[id]
}

func (f *fakeCluster) Record(ctx context.Context, c layout.Command) error {
	if err := f.Meta.Record(ctx, c); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recorded = append(f.recorded, c)
	return nil
}

func (f *fakeCluster) Step(_ context.Context, mv layout.ReplicaMove, abort bool) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps++
	if abort {
		f.aborts++
		return true, protocol.StepAborted, nil
	}
	return f.steps >= f.stepsToEnd, "catching up", nil
}

func (f *fakeCluster) ops() []layout.Op {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []layout.Op
	for _, c := range f.recorded {
		out = append(out, c.Op)
	}
	return out
}

// A move the rule names is recorded, stepped to its end and recorded as
// ended, and then the layout is balanced: one group on each node.
func TestPlacerRunsAMoveToItsEnd(t *testing.T) {
	f := twoNodes(t)
	p := New(f, Options{MoveStall: time.Minute})
	if err := p.place(context.Background()); err != nil {
		t.Fatal(err)
	}
	ops := f.ops()
	if len(ops) != 2 || ops[0] != layout.OpReplicaMoveStart || ops[1] != layout.OpReplicaMoveEnd || f.recorded[1].Aborted {
		t.Fatalf("recorded %v (aborted %v), want a start and an end", ops, len(ops) > 1 && f.recorded[1].Aborted)
	}
	if f.steps != 3 || f.aborts != 0 {
		t.Fatalf("%d steps, %d aborts; want 3 and 0", f.steps, f.aborts)
	}
	counts := f.Layout().ReplicaCounts()
	if counts["n1"] != 1 || counts["n2"] != 1 || f.Layout().Move != nil {
		t.Fatalf("after the move: %v, move %v", counts, f.Layout().Move)
	}
	if p.Moving() != nil {
		t.Fatalf("the placer still reports a move: %+v", p.Moving())
	}
	// Balanced: nothing more to do.
	if err := p.place(context.Background()); err != nil || len(f.ops()) != 2 {
		t.Fatalf("a balanced layout: %v, recorded %v", err, f.ops())
	}
}

// A destination that does not answer gets no move; one that stops
// answering mid-move past the stall timeout sees its move undone.
func TestPlacerAvoidsAndUndoesSilentDestinations(t *testing.T) {
	f := twoNodes(t)
	f.down["n2"] = true
	p := New(f, Options{MoveStall: time.Minute})
	if err := p.place(context.Background()); err != nil || len(f.ops()) != 0 {
		t.Fatalf("a silent destination: %v, recorded %v; want nothing", err, f.ops())
	}

	f = twoNodes(t)
	f.stepsToEnd = 1 << 30 // never ends on its own
	p = New(f, Options{MoveStall: time.Millisecond, OnReplicaMove: func(context.Context, layout.ReplicaMove, string) {
		f.mu.Lock()
		f.down["n2"] = true // the destination dies during the move
		f.mu.Unlock()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.place(ctx); err != nil {
		t.Fatal(err)
	}
	ops := f.ops()
	if len(ops) != 2 || ops[1] != layout.OpReplicaMoveEnd || !f.recorded[1].Aborted || f.aborts != 1 {
		t.Fatalf("recorded %v, aborts %d; want the move ended as aborted", ops, f.aborts)
	}
	if counts := f.Layout().ReplicaCounts(); counts["n1"] != 2 {
		t.Fatalf("after the undone move: %v, want both groups still on n1", counts)
	}
}
