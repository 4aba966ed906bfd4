package raftnode

import (
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/store"
)

func storeRanges(t layout.TransferState) []store.HashRange {
	out := make([]store.HashRange, len(t.Ranges))
	for i, r := range t.Ranges {
		out[i] = store.HashRange{Start: r.Start, End: r.End}
	}
	return out
}
