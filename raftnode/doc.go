// Package raftnode runs one ringkv node: a replica of the metadata group and
// of every data group assigned to the node, each a hashicorp/raft instance
// with a raft-boltdb log, a file snapshot store and (for data groups) a
// bbolt state machine from package store.
//
// All Raft traffic of the node shares one TCP port (Mux): each connection
// begins with a header naming its group. The metadata group (id 0, hosted by
// every node) replicates the cluster layout: members, groups, replicas and
// the consistent-hash ring, so every node routes a key the same way.
//
// Node is the API the HTTP layer calls. Any node accepts any request: it
// runs it when it leads the key's group (or the read is stale) and
// otherwise forwards it, one hop, to the leader's node. Writes are
// acknowledged after a majority commit and local apply. Reads are
// linearizable by default (see Consistency and replica.readBarrier).
//
// raftnode translates hashicorp/raft's errors into its own sentinels
// (errors.go) and never imports HTTP handlers; forwarding uses a plain HTTP
// client against the peer's internal endpoint.
package raftnode
