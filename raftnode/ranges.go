package raftnode

import (
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// storeRanges is ranges of the ring's hash space as the store takes them.
func storeRanges(rs []ring.Range) []store.HashRange {
	out := make([]store.HashRange, len(rs))
	for i, r := range rs {
		out[i] = store.HashRange{Start: r.Start, End: r.End}
	}
	return out
}
