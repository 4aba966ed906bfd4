// Package logstore holds a Raft group's log: Bolt, raft-boltdb behind a
// lock that lets the file be rewritten with its live entries once snapshots
// have truncated it, and Cache, the newest entries in memory, bounded in
// entries and in bytes. It knows Raft's log interfaces and bbolt, nothing of
// ringkv's groups.
package logstore
