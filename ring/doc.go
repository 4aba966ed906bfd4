// Package ring maps keys to Raft groups with a consistent-hash ring.
//
// Every group owns a number of virtual nodes (tokens) proportional to its
// weight. A key belongs to the group owning the first token at or after the
// key's hash, wrapping around. Tokens are not random: when a group is added,
// its tokens are carved out of the ranges of the groups that hold more than
// their new fair share, so shares stay within a fraction of a percent of
// weight/total and only keys moving into the new group change owner. Because
// allocation depends on the ring's history, the tokens themselves are part
// of the ring's State, which ringkv replicates through its metadata group;
// every node therefore routes every key the same way.
//
// A Ring is immutable: AddGroup and RemoveGroup return a new Ring with the
// epoch advanced, so readers may share one without locks.
//
// The package uses the standard library only.
package ring
