// Package fakemeta is a metadata group in memory for the drivers' tests:
// commands are applied with layout.Apply, as every replica applies them,
// and each change is published as the node's layout is.
package fakemeta

import (
	"context"
	"sync"

	"github.com/ringkv/ringkv/layout"
)

// Meta holds a layout that Record changes. The zero value is not ready:
// use New.
type Meta struct {
	mu      sync.Mutex
	l       *layout.Layout
	changed chan struct{}
}

// New returns an empty, uninitialised layout.
func New() *Meta { return &Meta{l: &layout.Layout{}, changed: make(chan struct{})} }

// Layout is the current layout.
func (m *Meta) Layout() *layout.Layout {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.l
}

// LayoutChanged is closed at the next change.
func (m *Meta) LayoutChanged() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// Record applies c, or returns the error the metadata group would.
func (m *Meta) Record(_ context.Context, c layout.Command) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := layout.Apply(m.l, c)
	if err != nil {
		return err
	}
	if next != nil {
		m.l = next
		close(m.changed)
		m.changed = make(chan struct{})
	}
	return nil
}
