// Package raftnode is the core of one ringkv node: a replica of the
// metadata group and of every data group assigned to the node, each a
// hashicorp/raft instance with its log from package logstore, a file
// snapshot store and (for data groups) a bbolt state machine from package
// store, all over the node's Raft port (package transport).
//
// The metadata group (id 0, hosted by every node) replicates the cluster
// layout (package layout), so every node routes a key the same way. Node is
// the API the HTTP layer calls. Any node accepts any request: it runs it
// when it leads the key's group (or the read is stale) and otherwise
// forwards it, one hop, to the leader's node (package protocol). Writes are
// acknowledged after a majority commit and local apply. Reads are
// linearizable by default (see protocol.Consistency and
// replica.readBarrier).
//
// The drivers that work across groups reach the node through small
// interfaces: verification (package verify, verifier.go), backup and
// restore (package backup, backup.go), replica placement (package placer,
// placer.go) and ring changes (package reshard, mover.go). DESIGN.md maps
// the files.
package raftnode
