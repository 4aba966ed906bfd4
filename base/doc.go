// Package base holds what every part of ringkv shares: the typed ids of
// nodes and Raft groups, the sentinel errors, and the words that name them
// on the wire (JSON error bodies, forwarded requests). It uses the
// standard library only, so that any package, ring included, may import
// it.
package base
