// Package protocol is the node-to-node request protocol: a Request (one
// typed Op on one group) and its Response with the result types they
// carry, the forwarding batch, the binary codec and framing of forwarding
// streams, the Forwarder that sends requests to the node that must run
// them (small ones on a long-lived stream per peer, the rest as batched
// HTTP on the peer's Raft port), and ServeStream, the serving side of a
// stream. Every node says its protocol Version in stream greetings,
// forwarding answers and its status, so a node can tell an earlier
// release by what it says rather than by how its errors read.
package protocol
