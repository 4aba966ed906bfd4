package raftnode

import (
	"context"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/transport"
)

// openPeerSecret returns the peer secret this node's Raft port requires,
// or nil when it requires none (peer TLS, or access control off). A node
// that bootstraps a cluster with access control makes the secret; one
// that joins learns it in joinLoop; one that restarts reads it.
func (n *Node) openPeerSecret(restart, bootstrap bool) (*transport.PeerSecret, error) {
	if n.cfg.PeerTLS != nil {
		return nil, nil
	}
	secret, err := transport.ReadPeerSecret(n.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	switch {
	case secret != nil:
		return transport.NewPeerSecret(secret), nil
	case n.cfg.ACL && bootstrap:
		secret = transport.MakePeerSecret()
		if err := transport.WritePeerSecret(n.cfg.DataDir, secret); err != nil {
			return nil, fmt.Errorf("storing the peer secret: %w", err)
		}
		return transport.NewPeerSecret(secret), nil
	case n.cfg.ACL && !restart:
		return transport.NewPeerSecret(nil), nil
	case restart && n.aclMarked.Load():
		n.log.Error("this node's cluster has access control on and runs without peer TLS, and its data dir has no " + transport.PeerSecretFile +
			" file: its peers will refuse it. Copy " + transport.PeerSecretFile + " from another node's data dir, or remove this node and join it again")
	}
	return nil, nil
}

// learnPeerSecret fetches, before a join, the cluster's peer secret from
// the node at url, when this node needs one and does not know it yet, and
// keeps it in the data dir.
func (n *Node) learnPeerSecret(ctx context.Context, url string) error {
	if n.secret == nil || n.secret.Get() != nil {
		return nil
	}
	secret, err := fetchPeerSecret(n.fwd, ctx, url, n.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("learning the cluster's peer secret: %w", err)
	}
	if err := transport.WritePeerSecret(n.cfg.DataDir, secret); err != nil {
		return fmt.Errorf("storing the peer secret: %w", err)
	}
	n.secret.Set(secret)
	n.log.Info("learned the cluster's peer secret", "via", url)
	return nil
}

// PeerSecret returns the cluster's peer secret, for a node about to join.
// It fails with ErrConflict when this node's Raft port needs none (peer
// TLS, or access control off) and ErrUnavailable before it knows it.
func (n *Node) PeerSecret() ([]byte, error) {
	if n.secret == nil {
		return nil, fmt.Errorf("%w: this cluster has no peer secret: its nodes authenticate each other with peer TLS, or access control is off", base.ErrConflict)
	}
	s := n.secret.Get()
	if s == nil {
		return nil, fmt.Errorf("%w: this node has not learned its cluster's peer secret yet", base.ErrUnavailable)
	}
	return s, nil
}
