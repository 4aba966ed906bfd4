package raftnode

import (
	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/protocol"
)

// serveStreams accepts forwarding streams until the layer closes.
func (n *Node) serveStreams(l raft.StreamLayer) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go protocol.ServeStream(n.ctx, c, n.cfg.ID, n.ProtocolVersion(), n.Serve)
	}
}

// ProtocolVersion is the node-to-node protocol version this node speaks,
// which it says in its stream greetings, forwarding answers and status.
func (n *Node) ProtocolVersion() int {
	if v := n.cfg.Knobs.ProtocolVersion; v != nil {
		return v()
	}
	return protocol.Version
}
