package layout

import (
	"fmt"
	"sort"

	"github.com/ringkv/ringkv/base"
)

// rule changes next, a copy of cur, as command c says; an error leaves
// the layout as it was. init is applyRules' own.
type rule func(cur, next *Layout, c Command) error

// rules is what every metadata command but init does to the layout.
var rules = map[Op]rule{
	OpAddNode:          ruleAddNode,
	OpLoads:            ruleLoads,
	OpNodeState:        ruleNodeState,
	OpReplicaMoveStart: ruleReplicaMoveStart,
	OpReplicaMoveEnd:   ruleReplicaMoveEnd,
	OpMigrateStart:     ruleMigrateStart,
	OpMigratePhase:     ruleMigratePhase,
	OpMigrateEnd:       ruleMigrateEnd,
	OpMigrateAbort:     ruleMigrateAbort,
	OpPinLeader:        rulePinLeader,
	OpACL:              ruleACL,
	OpMigrateAborted:   ruleMigrateAborted,
	OpRestoreBegin:     ruleRestoreBegin,
	OpRestoreRenew:     ruleRestoreLock,
	OpRestoreEnd:       ruleRestoreLock,
	OpRemoveNode:       ruleRemoveNode,
}

// ruleAddNode adds a node (or updates one rejoining at the same addresses); a group short of replicas takes it at once.
func ruleAddNode(cur, next *Layout, c Command) error {
	info := *c.Node
	info.Draining, info.Leaving = false, false
	if i := next.NodeIndex(c.Node.ID); i >= 0 {
		next.Nodes[i] = info
		return nil
	}
	next.Nodes = append(next.Nodes, info)
	sort.Slice(next.Nodes, func(i, j int) bool { return next.Nodes[i].ID < next.Nodes[j].ID })
	// A group short of replicas takes the new node at once; the
	// placer moves replicas of full groups onto it afterwards.
	for i := range next.Groups {
		if len(next.Groups[i].Replicas) < next.ReplicasPerGroup() && len(next.Groups[i].Bootstrap) == 0 {
			next.Groups[i].Replicas = append(next.Groups[i].Replicas, c.Node.ID)
		}
	}
	return nil
}

// ruleLoads records the groups' write loads the leader spread is planned by.
func ruleLoads(cur, next *Layout, c Command) error {
	next.Loads = nil
	for g, v := range c.Loads {
		if _, ok := cur.Group(g); ok && v > 0 {
			if next.Loads == nil {
				next.Loads = map[base.GroupID]float64{}
			}
			next.Loads[g] = v
		}
	}
	return nil
}

// ruleNodeState drains a node, or marks it leaving, or lets it hold replicas again.
func ruleNodeState(cur, next *Layout, c Command) error {
	if err := setNodeState(next, c.Node.ID, c.Draining, c.Leaving); err != nil {
		return err
	}
	return nil
}

// ruleReplicaMoveStart records a replica move in motion.
func ruleReplicaMoveStart(cur, next *Layout, c Command) error {
	if err := startReplicaMove(next, *c.Move); err != nil {
		return err
	}
	return nil
}

// ruleReplicaMoveEnd ends a replica move, done or aborted.
func ruleReplicaMoveEnd(cur, next *Layout, c Command) error {
	if err := endReplicaMove(next, *c.Move, c.Aborted); err != nil {
		return err
	}
	return nil
}

// ruleMigrateStart starts a ring change.
func ruleMigrateStart(cur, next *Layout, c Command) error {
	if err := startMigration(cur, next, *c.Change); err != nil {
		return err
	}
	return nil
}

// ruleMigratePhase records a transfer's phase.
func ruleMigratePhase(cur, next *Layout, c Command) error {
	if err := advanceMigration(next, *c.Phase); err != nil {
		return err
	}
	return nil
}

// ruleMigrateEnd ends a finished ring change.
func ruleMigrateEnd(cur, next *Layout, c Command) error {
	if err := endMigration(next); err != nil {
		return err
	}
	return nil
}

// ruleMigrateAbort starts undoing the ring change in motion.
func ruleMigrateAbort(cur, next *Layout, c Command) error {
	if err := abortMigration(next); err != nil {
		return err
	}
	return nil
}

// rulePinLeader pins a group's leader to a node holding a replica, or lifts the pin.
func rulePinLeader(cur, next *Layout, c Command) error {
	g, ok := cur.Group(c.Group)
	if !ok {
		return fmt.Errorf("%w: no group %d", base.ErrNotFound, c.Group)
	}
	if c.Node == nil {
		delete(next.Leaders, c.Group)
		return nil
	}
	replica := false
	for _, id := range g.Replicas {
		replica = replica || id == c.Node.ID
	}
	if !replica {
		return fmt.Errorf("%w: node %s holds no replica of group %d", base.ErrBadRequest, c.Node.ID, c.Group)
	}
	if next.Leaders == nil {
		next.Leaders = map[base.GroupID]base.NodeID{}
	}
	next.Leaders[c.Group] = c.Node.ID
	return nil
}

// ruleACL applies an access control change.
func ruleACL(cur, next *Layout, c Command) error {
	a, err := applyACL(cur.ACL, c.ACL)
	if err != nil {
		return err
	}
	next.ACL = a
	return nil
}

// ruleMigrateAborted ends an undone ring change.
func ruleMigrateAborted(cur, next *Layout, c Command) error {
	if err := endAbortedMigration(next); err != nil {
		return err
	}
	return nil
}

// ruleRestoreBegin takes the restore lock.
func ruleRestoreBegin(cur, next *Layout, c Command) error {
	if cur.Restore != nil {
		return fmt.Errorf("%w: a restore is in progress (%s, run by node %s); one at a time", base.ErrConflict, cur.Restore.ID, cur.Restore.Node)
	}
	if cur.Migration != nil {
		return fmt.Errorf("%w: a ring change is in progress (%s); restore once it is done", base.ErrConflict, cur.Migration.Change)
	}
	next.Restore = &RestoreLock{ID: c.Restore.ID, Node: c.Restore.Node}
	return nil
}

// ruleRestoreLock renews or releases the restore lock its holder has.
func ruleRestoreLock(cur, next *Layout, c Command) error {
	if cur.Restore == nil || cur.Restore.ID != c.Restore.ID {
		return fmt.Errorf("%w: restore %s does not hold the restore lock", base.ErrConflict, c.Restore.ID)
	}
	if c.Op == OpRestoreEnd {
		next.Restore = nil
		return nil
	}
	l := *cur.Restore
	l.Renewals++
	next.Restore = &l
	return nil
}

// ruleRemoveNode removes a node from the layout, its replicas and pins.
func ruleRemoveNode(cur, next *Layout, c Command) error {
	i := next.NodeIndex(c.Node.ID)
	if i < 0 {
		return fmt.Errorf("%w: node %s", base.ErrNotFound, c.Node.ID)
	}
	next.Nodes = append(next.Nodes[:i], next.Nodes[i+1:]...)
	if next.Move != nil && (next.Move.To == c.Node.ID || next.Move.From == c.Node.ID) {
		next.Move = nil // the placer plans again without it
	}
	for g, id := range next.Leaders {
		if id == c.Node.ID {
			delete(next.Leaders, g)
		}
	}
	for gi := range next.Groups {
		reps := next.Groups[gi].Replicas[:0]
		for _, r := range next.Groups[gi].Replicas {
			if r != c.Node.ID {
				reps = append(reps, r)
			}
		}
		next.Groups[gi].Replicas = reps
	}
	return nil
}
