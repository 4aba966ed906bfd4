package raftnode

import "bytes"

// mergeSorted merges key-sorted lists into one sorted list of at most limit
// entries (0: no limit). Groups hold disjoint keys.
func mergeSorted(lists [][]KV, limit int) []KV {
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	if limit > 0 && total > limit {
		total = limit
	}
	out := make([]KV, 0, total)
	pos := make([]int, len(lists))
	for len(out) < total {
		best := -1
		for i, l := range lists {
			if pos[i] < len(l) && (best < 0 || bytes.Compare(l[pos[i]].Key, lists[best][pos[best]].Key) < 0) {
				best = i
			}
		}
		out = append(out, lists[best][pos[best]])
		pos[best]++
	}
	return out
}
