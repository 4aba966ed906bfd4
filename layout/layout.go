package layout

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// NodeInfo is a cluster member as the metadata group records it: one wire
// type, defined in package api.
type NodeInfo = api.NodeInfo

// GroupInfo is a data group and the nodes that hold its replicas.
type GroupInfo struct {
	ID       base.GroupID  `json:"id"`
	Replicas []base.NodeID `json:"replicas"`
	// Bootstrap, for a group created by a ring change and not yet
	// established, lists the replicas that start it together.
	Bootstrap []base.NodeID `json:"bootstrap,omitempty"`
}

// Layout is the replicated cluster layout: members, groups, replicas and the
// ring. A Layout value is immutable once published.
type Layout struct {
	Initialized bool        `json:"initialized"`
	Nodes       []NodeInfo  `json:"nodes"` // sorted by id
	Groups      []GroupInfo `json:"groups"`
	Ring        ring.State  `json:"ring"`
	// Migration is the ring change in motion, if any.
	Migration *Migration `json:"migration,omitempty"`
	// Retired lists groups removed by ring changes: their ids are not
	// used again, and their replicas are shut down.
	Retired []base.GroupID `json:"retired,omitempty"`
	// Leaders pins groups' leaders to nodes (a hot group moved off a busy
	// node); other groups follow the balancer's spread.
	Leaders map[base.GroupID]base.NodeID `json:"leaders,omitempty"`
	// Replication is the number of replicas per group (0 means
	// DefaultReplication).
	Replication int `json:"replication,omitempty"`
	// Move is the replica being moved between nodes, if any.
	Move *ReplicaMove `json:"replica_move,omitempty"`
	// Loads are the groups' write rates (writes/s) as last recorded by
	// the balancer; leaderships spread by them (by count without).
	Loads map[base.GroupID]float64 `json:"loads,omitempty"`
	// ClusterID names the cluster, chosen when it was bootstrapped (empty
	// for clusters bootstrapped before it existed).
	ClusterID string `json:"cluster_id,omitempty"`
	// Restore is the cluster restore in progress, if any: one at a time.
	Restore *RestoreLock `json:"restore,omitempty"`
	// ACL is the cluster's access control (nil: off, as in clusters
	// bootstrapped without --acl).
	ACL *ACLState `json:"acl,omitempty"`
	// Index is the metadata log index a snapshot of the layout was taken
	// at; set only in snapshots (0 in older ones).
	Index uint64 `json:"index,omitempty"`

	ring *ring.Ring
	next *ring.Ring // the ring after Migration
}

// RestoreLock is the cluster-wide restore lock: one wire type, defined
// in package api.
type RestoreLock = api.RestoreLock

// Node returns the member with id.
func (l *Layout) Node(id base.NodeID) (NodeInfo, bool) {
	for _, n := range l.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// Group returns the group with id.
func (l *Layout) Group(id base.GroupID) (GroupInfo, bool) {
	for _, g := range l.Groups {
		if g.ID == id {
			return g, true
		}
	}
	return GroupInfo{}, false
}

// Route returns the group owning key.
func (l *Layout) Route(key []byte) (base.GroupID, error) {
	if l.ring == nil {
		return 0, fmt.Errorf("%w: cluster layout not initialised yet", base.ErrUnavailable)
	}
	g, err := l.ring.Lookup(key)
	if err != nil || l.Migration == nil {
		return base.GroupID(g), err
	}
	// A key whose range is moving belongs to the destination once its
	// transfer has flipped.
	to, err := l.next.Lookup(key)
	if err == nil && to != g {
		if t := l.Migration.transfer(base.GroupID(g), base.GroupID(to)); t != nil && (t.Phase == PhaseFlipped || t.Phase == PhaseDone) {
			return base.GroupID(to), nil
		}
	}
	return base.GroupID(g), nil
}

// RingView returns the layout's ring (nil before initialisation).
func (l *Layout) RingView() *ring.Ring { return l.ring }

func (l *Layout) NodeIndex(id base.NodeID) int {
	for i, n := range l.Nodes {
		if n.ID == id {
			return i
		}
	}
	return -1
}

func (l *Layout) clone() *Layout {
	c := &Layout{Initialized: l.Initialized, Ring: l.Ring, ring: l.ring, Migration: l.Migration, next: l.next,
		Retired: append([]base.GroupID(nil), l.Retired...), Replication: l.Replication, Move: l.Move, ClusterID: l.ClusterID,
		Restore: l.Restore, ACL: l.ACL}
	for g, id := range l.Leaders {
		if c.Leaders == nil {
			c.Leaders = map[base.GroupID]base.NodeID{}
		}
		c.Leaders[g] = id
	}
	for g, v := range l.Loads {
		if c.Loads == nil {
			c.Loads = map[base.GroupID]float64{}
		}
		c.Loads[g] = v
	}
	c.Nodes = append([]NodeInfo(nil), l.Nodes...)
	for _, g := range l.Groups {
		c.Groups = append(c.Groups, GroupInfo{ID: g.ID, Replicas: append([]base.NodeID(nil), g.Replicas...),
			Bootstrap: append([]base.NodeID(nil), g.Bootstrap...)})
	}
	return c
}

func Decode(r io.Reader) (*Layout, error) {
	var l Layout
	if err := json.NewDecoder(r).Decode(&l); err != nil {
		return nil, fmt.Errorf("meta snapshot: %w", err)
	}
	if l.Initialized {
		rg, err := ring.FromState(l.Ring)
		if err != nil {
			return nil, fmt.Errorf("meta snapshot: %w", err)
		}
		l.ring = rg
		if l.Migration != nil {
			if l.next, err = ring.FromState(l.Migration.Next); err != nil {
				return nil, fmt.Errorf("meta snapshot: next ring: %w", err)
			}
		}
	} else if len(l.Groups) > 0 || len(l.Nodes) > 0 {
		return nil, errors.New("meta snapshot: uninitialised layout with members")
	}
	return &l, nil
}

// RoutingVersion identifies how the layout routes keys to groups: it
// changes with the ring, a ring change starting, ending or aborting, and
// every phase of its transfers (which decide where a moving key is
// answered for). Never 0.
func (l *Layout) RoutingVersion() uint64 {
	h := fnv.New64a()
	var b []byte
	b = binary.AppendUvarint(b, l.Ring.Epoch)
	if m := l.Migration; m != nil {
		b = append(b, 1)
		if m.Aborting {
			b = append(b, 1)
		}
		b = binary.AppendUvarint(b, m.Next.Epoch)
		for _, t := range m.Transfers {
			b = binary.AppendUvarint(b, uint64(t.From))
			b = binary.AppendUvarint(b, uint64(t.To))
			b = append(b, t.Phase...)
			b = append(b, 0)
		}
	}
	h.Write(b)
	return h.Sum64() | 1
}
