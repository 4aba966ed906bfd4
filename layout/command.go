package layout

import (
	"encoding/json"
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// Command is an entry of the metadata group's log.
type Command struct {
	Op     Op        `json:"op"`
	Node   *NodeInfo `json:"node,omitempty"`
	Groups int       `json:"groups,omitempty"`
	VNodes int       `json:"vnodes,omitempty"`
	// Change starts a ring change; Phase records a transfer's progress.
	Change *RingChange     `json:"change,omitempty"`
	Phase  *MigrationPhase `json:"phase,omitempty"`
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

func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: meta command: %v", base.ErrBadRequest, err)
	}
	switch c.Op {
	case OpInit:
		if c.Node == nil || c.Node.ID == "" || c.Groups < 1 || c.Groups > 1024 || c.VNodes < 1 || c.VNodes > 4096 ||
			c.Replication < 0 || c.Replication > MaxReplication {
			return c, fmt.Errorf("%w: meta init: bad fields", base.ErrBadRequest)
		}
	case OpAddNode, OpRemoveNode, OpNodeState:
		if c.Node == nil || c.Node.ID == "" {
			return c, fmt.Errorf("%w: meta %s: node missing", base.ErrBadRequest, c.Op)
		}
		if !(c.Node.Weight >= 0 && c.Node.Weight <= MaxNodeWeight) {
			return c, fmt.Errorf("%w: meta %s: weight %v", base.ErrBadRequest, c.Op, c.Node.Weight)
		}
		if c.Op == OpAddNode {
			if err := CheckMember(*c.Node); err != nil {
				return c, fmt.Errorf("meta add_node: %w", err)
			}
		}
	case OpReplicaMoveStart, OpReplicaMoveEnd:
		if c.Move == nil || c.Move.To == "" || c.Move.Group == 0 {
			return c, fmt.Errorf("%w: meta %s: move missing", base.ErrBadRequest, c.Op)
		}
		if err := CheckGroupID("meta "+string(c.Op)+": group", c.Move.Group); err != nil {
			return c, err
		}
	case OpMigrateStart:
		if c.Change == nil {
			return c, fmt.Errorf("%w: meta migrate_start: change missing", base.ErrBadRequest)
		}
		if err := c.Change.Check(); err != nil {
			return c, fmt.Errorf("meta migrate_start: %w", err)
		}
		if c.Change.Add != nil && c.Change.Add.Group == 0 {
			return c, fmt.Errorf("%w: meta migrate_start: an added group needs its id", base.ErrBadRequest)
		}
	case OpMigratePhase:
		if c.Phase == nil {
			return c, fmt.Errorf("%w: meta migrate_phase: phase missing", base.ErrBadRequest)
		}
	case OpLoads:
		if len(c.Loads) > 4096 {
			return c, fmt.Errorf("%w: meta loads: %d groups", base.ErrBadRequest, len(c.Loads))
		}
		for g, v := range c.Loads {
			if !(v >= 0 && v <= 1e9) {
				return c, fmt.Errorf("%w: meta loads: rate %v", base.ErrBadRequest, v)
			}
			if err := CheckGroupID("meta loads: group", g); err != nil {
				return c, err
			}
		}
	case OpMigrateEnd, OpMigrateAbort, OpMigrateAborted:
	case OpRestoreBegin, OpRestoreRenew, OpRestoreEnd:
		if c.Restore == nil {
			return c, fmt.Errorf("%w: meta %s: lock missing", base.ErrBadRequest, c.Op)
		}
		if err := CheckRestoreID(c.Restore.ID); err != nil {
			return c, fmt.Errorf("meta %s: %w", c.Op, err)
		}
		if c.Op == OpRestoreBegin {
			if err := CheckNodeID(c.Restore.Node); err != nil {
				return c, fmt.Errorf("meta restore_begin: %w", err)
			}
		}
	case OpPinLeader:
		if err := CheckGroupID("meta pin_leader: group", c.Group); err != nil {
			return c, err
		}
	case OpACL:
		if err := c.ACL.Check(); err != nil {
			return c, fmt.Errorf("meta acl: %w", err)
		}
	default:
		return c, fmt.Errorf("%w: meta op %q", base.ErrBadRequest, c.Op)
	}
	return c, nil
}

// Op names a metadata command; its words are what the log holds.
type Op string

// The metadata commands. applyRules (and rules) says what each
// does to the layout; DecodeCommand what each must carry.
const (
	OpInit             Op = "init"
	OpAddNode          Op = "add_node"
	OpRemoveNode       Op = "remove_node"
	OpNodeState        Op = "node_state"
	OpMigrateStart     Op = "migrate_start"
	OpMigratePhase     Op = "migrate_phase"
	OpMigrateEnd       Op = "migrate_end"
	OpMigrateAbort     Op = "migrate_abort"
	OpMigrateAborted   Op = "migrate_aborted"
	OpPinLeader        Op = "pin_leader"
	OpReplicaMoveStart Op = "replica_move_start"
	OpReplicaMoveEnd   Op = "replica_move_end"
	OpLoads            Op = "loads"
	OpRestoreBegin     Op = "restore_begin"
	OpRestoreRenew     Op = "restore_renew"
	OpRestoreEnd       Op = "restore_end"
	OpACL              Op = "acl"
)

// Apply computes the layout after c; nil means unchanged. It is
// deterministic. A command it cannot apply is refused with an error and
// leaves the layout as it was: a panic in the rules (a bug; the fuzz target
// FuzzApplyMeta looks for them) is turned into such a refusal too, because
// the command is in the log and would otherwise stop every replica again
// at every restart.
func Apply(cur *Layout, c Command) (next *Layout, err error) {
	defer func() {
		if p := recover(); p != nil {
			next, err = nil, fmt.Errorf("%w: meta %s: refused: %v", base.ErrBadRequest, c.Op, p)
		}
	}()
	return applyRules(cur, c)
}

func applyRules(cur *Layout, c Command) (*Layout, error) {
	if !cur.Initialized && c.Op != OpInit {
		// A layout with members but no ring would not restore from a
		// snapshot.
		return nil, fmt.Errorf("%w: meta %s: cluster layout not initialised yet", base.ErrUnavailable, c.Op)
	}
	next := cur.clone()
	if c.Op == OpInit {
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
	rule, ok := rules[c.Op]
	if !ok {
		return next, nil // DecodeCommand refuses unknown ops first
	}
	if err := rule(cur, next, c); err != nil {
		return nil, err
	}
	return next, nil
}
