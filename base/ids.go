package base

// NodeID names a node; it doubles as the Raft server id in every group.
type NodeID string

// GroupID names a Raft group, and the ring's groups. 0 is the metadata
// group.
type GroupID uint32

// MetaGroup is the id of the metadata group that every node hosts.
const MetaGroup GroupID = 0
