package raftnode

import (
	"bytes"
	"io"

	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/store"
)

func TestWireErrorsRoundTrip(t *testing.T) {
	for _, err := range []error{base.ErrNotFound, base.ErrNoLeader, base.ErrUnavailable, base.ErrOutcomeUnknown, base.ErrClusterFull, base.ErrConflict, base.ErrBadRequest,
		&base.NotLeaderError{Group: 2, Leader: "n3"}, &base.CASFailedError{Current: 9}} {
		back := base.FromWire(base.ToWire(err))
		if base.Code(back) != base.Code(err) {
			t.Errorf("%v came back as %v", err, back)
		}
	}
	var nl *base.NotLeaderError
	if !errors.As(base.FromWire(base.ToWire(&base.NotLeaderError{Group: 2, Leader: "n3"})), &nl) || nl.Leader != "n3" || nl.Group != 2 {
		t.Errorf("NotLeaderError lost its fields: %+v", nl)
	}
}

func TestPackSplitsRepeatedKeysAndKeepsOthersAlone(t *testing.T) {
	prop := func(key string, cmd string) *proposal {
		p := &proposal{cmd: []byte(cmd), done: make(chan struct{})}
		if key != "" {
			p.key = []byte(key)
		}
		return p
	}
	dropped := prop("x", "dropped")
	dropped.state.Store(propDropped)
	wave := []*proposal{prop("a", "a1"), prop("b", "b1"), prop("a", "a2"), prop("", "verify"), dropped, prop("c", "c1"), prop("a", "a3")}
	entries := pack(wave)
	var shapes []int
	for _, e := range entries {
		shapes = append(shapes, len(e.props))
	}
	// [a1 b1 c1] [a2] [verify] [a3]: each key once per entry, the
	// unpackable alone, the dropped nowhere.
	if fmt.Sprint(shapes) != "[3 1 1 1]" {
		t.Fatalf("entries of %v", shapes)
	}
	if string(entries[1].cmd) != "a2" || string(entries[2].cmd) != "verify" || string(entries[3].cmd) != "a3" {
		t.Fatalf("single entries carry %q %q %q", entries[1].cmd, entries[2].cmd, entries[3].cmd)
	}
	if !store.IsBatch(entries[0].cmd) {
		t.Fatal("the first entry is not packed")
	}
	if dropped.state.Load() != propDropped {
		t.Fatal("a dropped proposal was sent")
	}
}

// The metadata state machine knows which log index its layout reflects,
// also after a failed command and across a snapshot and restore: a node
// compares it with its peers' to learn that it was removed.
func TestMetaFSMIndex(t *testing.T) {
	f := newMetaFSM()
	n1 := layout.NodeInfo{ID: "n1", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}
	if err := f.Apply(&raft.Log{Index: 3, Data: mustJSON(layout.Command{Op: "init", Node: &n1, Groups: 2, VNodes: 8, ClusterID: "abc"})}); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.Apply(&raft.Log{Index: 4, Data: mustJSON(layout.Command{Op: "replica_move_end", Move: &layout.ReplicaMove{Group: 9, To: "n1"}})}).(error); err == nil {
		t.Fatal("ending a move that never started succeeded")
	}
	l, index := f.LayoutAt()
	if index != 4 || l.ClusterID != "abc" {
		t.Fatalf("after entries 3 and 4: index %d cluster %q", index, l.ClusterID)
	}
	n2 := layout.NodeInfo{ID: "n2", HTTPAddr: "127.0.0.1:3", RaftAddr: "127.0.0.1:4"}
	if err := f.Apply(&raft.Log{Index: 5, Data: mustJSON(layout.Command{Op: "add_node", Node: &n2})}); err != nil {
		t.Fatal(err)
	}
	if l, index = f.LayoutAt(); index != 5 || l.ClusterID != "abc" || len(l.Nodes) != 2 {
		t.Fatalf("after a join: index %d cluster %q nodes %d", index, l.ClusterID, len(l.Nodes))
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newMetaFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	back, bindex := g.LayoutAt()
	if bindex != 5 || back.Index != 0 || back.ClusterID != "abc" || len(back.Groups) != 2 {
		t.Fatalf("restored: index %d, layout index field %d, cluster %q, groups %d", bindex, back.Index, back.ClusterID, len(back.Groups))
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
