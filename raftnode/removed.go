package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
)

// ErrRemoved is returned by New for a data dir whose node was removed from
// its cluster: its replicas are out of every group, and running them
// again would only disturb the members that remain.
var ErrRemoved = errors.New("this node was removed from its cluster")

// removedMarker is the file in the data dir that records the removal.
const removedMarker = "REMOVED"

// removalRecord is what the marker records.
type removalRecord struct {
	Node      base.NodeID `json:"node"`
	ClusterID string      `json:"cluster_id,omitempty"`
	Peer      base.NodeID `json:"learned_from"`
	At        time.Time   `json:"at"`
}

func newClusterID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return ""
	}
	return hex.EncodeToString(b[:])
}

// checkNotRemoved fails with ErrRemoved when dataDir holds a removal
// marker.
func checkNotRemoved(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, removedMarker))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var r removalRecord
	if json.Unmarshal(b, &r) != nil {
		return fmt.Errorf("%w (%s); to join a cluster again, start with an empty data dir and --join", ErrRemoved, filepath.Join(dataDir, removedMarker))
	}
	return fmt.Errorf("%w: %s learned at %s from %s that it is no longer a member; to join a cluster again, start with an empty data dir and --join",
		ErrRemoved, r.Node, r.At.Format(time.RFC3339), r.Peer)
}

// removedBy reports whether a peer's status proves that the cluster has
// removed self: the peer belongs to the same cluster, its layout is at
// least as new as ours (which lists us), and it does not list us. Every
// replica applies the same metadata log, so a layout at a later index
// without us means a removal was committed after we were added.
func removedBy(self base.NodeID, mine *layout.Layout, myIndex uint64, peer Status) bool {
	if myIndex == 0 || mine.NodeIndex(self) < 0 || peer.Node == self || peer.LayoutIndex < myIndex {
		return false
	}
	if mine.ClusterID != peer.ClusterID {
		return false
	}
	for _, m := range peer.Members {
		if m.ID == self {
			return false
		}
	}
	return true
}

// removalLoop notices that this node was removed from the cluster: once
// its metadata replica has heard from no leader for a few election
// timeouts (a removed node's leader stops writing to it), it asks the
// other members it knows of for their status. A removed node records the
// removal in its data dir and calls OnRemoved.
func (n *Node) removalLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.Timing.Election)
	defer tick.Stop()
	var silent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n.meta.leader() != "" || !n.isJoined() {
			silent = time.Time{}
			continue
		}
		if silent.IsZero() {
			silent = time.Now()
		}
		if time.Since(silent) < 3*n.cfg.Timing.Election {
			continue
		}
		silent = time.Now() // next check after another stretch
		if peer, ok := n.learnRemoved(ctx); ok {
			n.markRemoved(peer)
			return
		}
	}
}

// learnRemoved asks the other members for their status; it returns the
// first whose status proves this node was removed.
func (n *Node) learnRemoved(ctx context.Context) (base.NodeID, bool) {
	mine, index := n.meta.meta.LayoutAt()
	for _, m := range mine.Nodes {
		if m.ID == n.cfg.ID {
			continue
		}
		st, err := n.peerStatus(ctx, m.ID)
		if err == nil && removedBy(n.cfg.ID, mine, index, st) {
			return m.ID, true
		}
	}
	return "", false
}

func (n *Node) markRemoved(peer base.NodeID) {
	l := n.Layout()
	r := removalRecord{Node: n.cfg.ID, ClusterID: l.ClusterID, Peer: peer, At: time.Now().UTC()}
	b, _ := json.Marshal(r)
	path := filepath.Join(n.cfg.DataDir, removedMarker)
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		n.log.Error("recording the removal", "err", err)
	}
	n.removed.Store(true)
	n.log.Error("this node was removed from the cluster: it no longer serves, and will not start on this data dir again", "learned_from", peer)
	if n.cfg.OnRemoved != nil {
		n.cfg.OnRemoved(peer)
	}
}

// Removed reports whether this node has learned that the cluster removed
// it.
func (n *Node) Removed() bool { return n.removed.Load() }
