// Package layout is the replicated cluster layout as pure logic: the
// members, the groups and their replicas, the ring and the ring change in
// motion, the replica move in motion, leader pins, the restore lock and
// the access control state; a typed Op for every command of the metadata
// group's log, DecodeCommand that refuses a malformed one, and Apply, one
// rule per Op (rules.go), deterministic and free of I/O, so that every
// replica of the metadata group computes the same layout. The placement
// rule (NextMove, LeaderPlan) and the ring-change steps (migration.go)
// live here too. It imports no Raft: raftnode wraps Apply in the metadata
// group's state machine and drives the moves.
package layout
