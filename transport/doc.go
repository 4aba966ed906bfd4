// Package transport is a node's Raft port: one TCP listener that carries
// the Raft traffic of every group and the node-to-node HTTP and streams,
// told apart by a header at the start of each connection. It authenticates
// peers (peer TLS, or the peer secret's challenge-response) before anything
// they send reaches a group, and holds the fault hook (Block) that tests and
// the chaos harness use to cut a node off. It knows nothing of what the
// groups hold; raftnode builds on it.
package transport
