package raftnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// NodeInfo is a cluster member as the metadata group records it.
type NodeInfo struct {
	ID       base.NodeID `json:"id"`
	HTTPAddr string      `json:"http_addr"`
	RaftAddr string      `json:"raft_addr"`
	// Weight is the node's capacity relative to others (0 means 1): it
	// receives replicas and leaderships in proportion.
	Weight float64 `json:"weight,omitempty"`
	// Draining: the node's replicas move to other nodes and it receives
	// none; Leaving: once drained it is removed from the cluster.
	Draining bool `json:"draining,omitempty"`
	Leaving  bool `json:"leaving,omitempty"`
}

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

// RestoreLock is the cluster-wide lock a restore holds from before it
// reads its archive until every group is restored or put back. Node is the
// node running it; it renews the lock (Renewals counts), and the metadata
// leader releases a lock no longer renewed (its node died), lifting the
// restore's fences first.
type RestoreLock struct {
	ID       string      `json:"id"`
	Node     base.NodeID `json:"node"`
	Renewals uint64      `json:"renewals,omitempty"`
}

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

// metaCommand is an entry of the metadata group's log.
type metaCommand struct {
	Op     metaOp    `json:"op"`
	Node   *NodeInfo `json:"node,omitempty"`
	Groups int       `json:"groups,omitempty"`
	VNodes int       `json:"vnodes,omitempty"`
	// Change starts a ring change; Phase records a transfer's progress.
	Change *RingChange     `json:"change,omitempty"`
	Phase  *migrationPhase `json:"phase,omitempty"`
	// Group is the group whose leader pin_leader pins to Node, or
	// unpins when Node is nil.
	Group base.GroupID `json:"group,omitempty"`
	// Replication is the replicas per group, ClusterID the cluster's
	// name (init).
	Replication int    `json:"replication,omitempty"`
	ClusterID   string `json:"cluster_id,omitempty"`
	// Move starts or ends a replica move; Aborted ends it with the
	// replicas unchanged.
	Move    *ReplicaMove `json:"move,omitempty"`
	Aborted bool         `json:"aborted,omitempty"`
	// Loads records the groups' write rates (loads).
	Loads map[base.GroupID]float64 `json:"loads,omitempty"`
	// Draining and Leaving set a node's state (node_state).
	Draining bool `json:"draining,omitempty"`
	Leaving  bool `json:"leaving,omitempty"`
	// Restore takes, renews or releases the restore lock.
	Restore *RestoreLock `json:"restore,omitempty"`
	// EnableACL turns access control on for good (init); ACL changes it
	// (acl).
	EnableACL bool       `json:"enable_acl,omitempty"`
	ACL       *ACLChange `json:"acl,omitempty"`
}

func decodeMetaCommand(b []byte) (metaCommand, error) {
	var c metaCommand
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: meta command: %v", base.ErrBadRequest, err)
	}
	switch c.Op {
	case metaInit:
		if c.Node == nil || c.Node.ID == "" || c.Groups < 1 || c.Groups > 1024 || c.VNodes < 1 || c.VNodes > 4096 ||
			c.Replication < 0 || c.Replication > MaxReplication {
			return c, fmt.Errorf("%w: meta init: bad fields", base.ErrBadRequest)
		}
	case metaAddNode, metaRemoveNode, metaNodeState:
		if c.Node == nil || c.Node.ID == "" {
			return c, fmt.Errorf("%w: meta %s: node missing", base.ErrBadRequest, c.Op)
		}
		if !(c.Node.Weight >= 0 && c.Node.Weight <= MaxNodeWeight) {
			return c, fmt.Errorf("%w: meta %s: weight %v", base.ErrBadRequest, c.Op, c.Node.Weight)
		}
		if c.Op == metaAddNode {
			if err := CheckMember(*c.Node); err != nil {
				return c, fmt.Errorf("meta add_node: %w", err)
			}
		}
	case metaReplicaMoveStart, metaReplicaMoveEnd:
		if c.Move == nil || c.Move.To == "" || c.Move.Group == 0 {
			return c, fmt.Errorf("%w: meta %s: move missing", base.ErrBadRequest, c.Op)
		}
		if err := checkGroupID("meta "+string(c.Op)+": group", c.Move.Group); err != nil {
			return c, err
		}
	case metaMigrateStart:
		if c.Change == nil {
			return c, fmt.Errorf("%w: meta migrate_start: change missing", base.ErrBadRequest)
		}
		if err := c.Change.check(); err != nil {
			return c, fmt.Errorf("meta migrate_start: %w", err)
		}
		if c.Change.Add != nil && c.Change.Add.Group == 0 {
			return c, fmt.Errorf("%w: meta migrate_start: an added group needs its id", base.ErrBadRequest)
		}
	case metaMigratePhase:
		if c.Phase == nil {
			return c, fmt.Errorf("%w: meta migrate_phase: phase missing", base.ErrBadRequest)
		}
	case metaLoads:
		if len(c.Loads) > 4096 {
			return c, fmt.Errorf("%w: meta loads: %d groups", base.ErrBadRequest, len(c.Loads))
		}
		for g, v := range c.Loads {
			if !(v >= 0 && v <= 1e9) {
				return c, fmt.Errorf("%w: meta loads: rate %v", base.ErrBadRequest, v)
			}
			if err := checkGroupID("meta loads: group", g); err != nil {
				return c, err
			}
		}
	case metaMigrateEnd, metaMigrateAbort, metaMigrateAborted:
	case metaRestoreBegin, metaRestoreRenew, metaRestoreEnd:
		if c.Restore == nil {
			return c, fmt.Errorf("%w: meta %s: lock missing", base.ErrBadRequest, c.Op)
		}
		if err := checkRestoreID(c.Restore.ID); err != nil {
			return c, fmt.Errorf("meta %s: %w", c.Op, err)
		}
		if c.Op == metaRestoreBegin {
			if err := CheckNodeID(c.Restore.Node); err != nil {
				return c, fmt.Errorf("meta restore_begin: %w", err)
			}
		}
	case metaPinLeader:
		if err := checkGroupID("meta pin_leader: group", c.Group); err != nil {
			return c, err
		}
	case metaACL:
		if err := c.ACL.check(); err != nil {
			return c, fmt.Errorf("meta acl: %w", err)
		}
	default:
		return c, fmt.Errorf("%w: meta op %q", base.ErrBadRequest, c.Op)
	}
	return c, nil
}

// metaOp names a metadata command; its words are what the log holds.
type metaOp string

// The metadata commands. applyMetaRules (and metaRules) says what each
// does to the layout; decodeMetaCommand what each must carry.
const (
	metaInit             metaOp = "init"
	metaAddNode          metaOp = "add_node"
	metaRemoveNode       metaOp = "remove_node"
	metaNodeState        metaOp = "node_state"
	metaMigrateStart     metaOp = "migrate_start"
	metaMigratePhase     metaOp = "migrate_phase"
	metaMigrateEnd       metaOp = "migrate_end"
	metaMigrateAbort     metaOp = "migrate_abort"
	metaMigrateAborted   metaOp = "migrate_aborted"
	metaPinLeader        metaOp = "pin_leader"
	metaReplicaMoveStart metaOp = "replica_move_start"
	metaReplicaMoveEnd   metaOp = "replica_move_end"
	metaLoads            metaOp = "loads"
	metaRestoreBegin     metaOp = "restore_begin"
	metaRestoreRenew     metaOp = "restore_renew"
	metaRestoreEnd       metaOp = "restore_end"
	metaACL              metaOp = "acl"
)

// metaFSM is the metadata group's state machine. It keeps the layout in
// memory; its snapshots are the layout as JSON.
type metaFSM struct {
	mu     sync.Mutex
	layout *Layout
	// index is the metadata log index the layout reflects: the last entry
	// applied, or the snapshot restored (0 when unknown: a snapshot
	// written before snapshots carried it).
	index   uint64
	changed chan struct{}
	// before, when set, is called before each entry applies (Config.Knobs.OnMetaApply).
	before func(index uint64)
}

func newMetaFSM() *metaFSM {
	return &metaFSM{layout: &Layout{}, changed: make(chan struct{})}
}

// Layout returns the current layout. Callers must not modify it.
func (f *metaFSM) Layout() *Layout {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layout
}

// LayoutAt returns the current layout and the metadata log index it
// reflects (0: unknown).
func (f *metaFSM) LayoutAt() (*Layout, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.layout, f.index
}

// Changed returns a channel closed at the next layout change.
func (f *metaFSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// publish makes l the layout at index; a nil l keeps the layout and
// only moves the index on.
func (f *metaFSM) publish(l *Layout, index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = index
	if l == nil {
		return
	}
	f.layout = l
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *metaFSM) Apply(lg *raft.Log) interface{} {
	if f.before != nil {
		f.before(lg.Index)
	}
	c, err := decodeMetaCommand(lg.Data)
	if err != nil {
		f.publish(nil, lg.Index)
		return err
	}
	next, err := applyMeta(f.Layout(), c)
	f.publish(next, lg.Index)
	return err
}

// applyMeta computes the layout after c; nil means unchanged. It is
// deterministic. A command it cannot apply is refused with an error and
// leaves the layout as it was: a panic in the rules (a bug; the fuzz target
// FuzzApplyMeta looks for them) is turned into such a refusal too, because
// the command is in the log and would otherwise stop every replica again
// at every restart.
func applyMeta(cur *Layout, c metaCommand) (next *Layout, err error) {
	defer func() {
		if p := recover(); p != nil {
			next, err = nil, fmt.Errorf("%w: meta %s: refused: %v", base.ErrBadRequest, c.Op, p)
		}
	}()
	return applyMetaRules(cur, c)
}

func applyMetaRules(cur *Layout, c metaCommand) (*Layout, error) {
	if !cur.Initialized && c.Op != metaInit {
		// A layout with members but no ring would not restore from a
		// snapshot.
		return nil, fmt.Errorf("%w: meta %s: cluster layout not initialised yet", base.ErrUnavailable, c.Op)
	}
	next := cur.clone()
	if c.Op == metaInit {
		if cur.Initialized {
			return nil, nil
		}
		r := ring.New(c.VNodes)
		for i := 1; i <= c.Groups; i++ {
			var err error
			if r, err = r.AddGroup(base.GroupID(i), 1); err != nil {
				return nil, err
			}
			next.Groups = append(next.Groups, GroupInfo{ID: base.GroupID(i), Replicas: []base.NodeID{c.Node.ID}})
		}
		next.Initialized = true
		next.Replication = c.Replication
		next.ClusterID = c.ClusterID
		if c.EnableACL {
			next.ACL = NewACLState()
		}
		next.Nodes = []NodeInfo{*c.Node}
		next.Ring, next.ring = r.State(), r
		return next, nil
	}
	rule, ok := metaRules[c.Op]
	if !ok {
		return next, nil // decodeMetaCommand refuses unknown ops first
	}
	if err := rule(cur, next, c); err != nil {
		return nil, err
	}
	return next, nil
}

func (l *Layout) nodeIndex(id base.NodeID) int {
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

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	cur, index := f.LayoutAt()
	l := *cur
	l.Index = index
	b, err := json.Marshal(&l)
	if err != nil {
		return nil, err
	}
	return metaSnapshot(b), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	l, err := decodeLayout(rc)
	if err != nil {
		return err
	}
	index := l.Index
	l.Index = 0
	f.publish(l, index)
	return nil
}

func decodeLayout(r io.Reader) (*Layout, error) {
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

type metaSnapshot []byte

func (s metaSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s metaSnapshot) Release() {}
