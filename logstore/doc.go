// Package logstore holds a Raft group's log: WAL, hashicorp/raft-wal
// (segment files written by appending, one fsync per append, truncated by
// dropping whole segments); Bolt, raft-boltdb behind a lock that lets the
// file be rewritten with its live entries once snapshots have truncated
// it; Open and Detect, which pick one by name or by what a group
// directory holds; and Cache, the newest entries in memory, bounded in
// entries and in bytes. It knows Raft's log interfaces and its stores,
// nothing of ringkv's groups.
package logstore
