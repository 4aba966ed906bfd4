package raftnode

import (
	"encoding/json"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/layout"
)

// metaFSM is the metadata group's state machine. It keeps the layout in
// memory; its snapshots are the layout as JSON.
type metaFSM struct {
	mu     sync.Mutex
	layout *layout.Layout
	// index is the metadata log index the layout reflects: the last entry
	// applied, or the snapshot restored (0 when unknown: a snapshot
	// written before snapshots carried it).
	index   uint64
	changed chan struct{}
	// before, when set, is called before each entry applies (Config.Knobs.OnMetaApply).
	before func(index uint64)
}

func newMetaFSM() *metaFSM {
	return &metaFSM{layout: &layout.Layout{}, changed: make(chan struct{})}
}

// Layout returns the current layout. Callers must not modify it.
func (f *metaFSM) Layout() *layout.Layout {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layout
}

// LayoutAt returns the current layout and the metadata log index it
// reflects (0: unknown).
func (f *metaFSM) LayoutAt() (*layout.Layout, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layout, f.index
}

// Changed returns a channel closed at the next layout change.
func (f *metaFSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// publish makes l the layout at index; a nil l keeps the layout and
// only moves the index on.
func (f *metaFSM) publish(l *layout.Layout, index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = index
	if l == nil {
		return
	}
	f.layout = l
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *metaFSM) Apply(lg *raft.Log) interface{} {
	if f.before != nil {
		f.before(lg.Index)
	}
	c, err := layout.DecodeCommand(lg.Data)
	if err != nil {
		f.publish(nil, lg.Index)
		return err
	}
	next, err := layout.Apply(f.Layout(), c)
	f.publish(next, lg.Index)
	return err
}

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	cur, index := f.LayoutAt()
	l := *cur
	l.Index = index
	b, err := json.Marshal(&l)
	if err != nil {
		return nil, err
	}
	return metaSnapshot(b), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	l, err := layout.Decode(rc)
	if err != nil {
		return err
	}
	index := l.Index
	l.Index = 0
	f.publish(l, index)
	return nil
}

type metaSnapshot []byte

func (s metaSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s metaSnapshot) Release() {}
