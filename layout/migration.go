package layout

import (
	"fmt"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// A ring change in motion. The metadata group records it (Layout.Migration)
// and every step of it, so that any node routes keys the same way while it
// runs and a new metadata leader carries it on after a crash. Keys move in
// transfers, one per source and destination group; each goes through these
// phases:
//
//	copy     the mover copies the ranges from the source's leader to the
//	         destination; the source still answers for them
//	fenced   the source refuses writes to the ranges; the mover copies
//	         what changed and checks that both sides' digests of the
//	         ranges agree
//	flipped  the destination answers for the ranges; the source drops
//	         its copy
//	done
//
// When every transfer is done the new ring takes over.
const (
	PhaseCopy    = "copy"
	PhaseFenced  = "fenced"
	PhaseFlipped = "flipped"
	PhaseDone    = "done"
)

// Migration is a ring change in progress.
type Migration struct {
	Change RingChange `json:"change"`
	// Next is the ring once the change is complete.
	Next      ring.State      `json:"next"`
	Transfers []TransferState `json:"transfers"`
	// Retire is the group leaving the cluster at the end (remove).
	Retire base.GroupID `json:"retire,omitempty"`
	// Aborting asks the mover to undo the change instead: every source
	// takes its ranges back and the destinations drop their copies. Only
	// a change with no transfer flipped yet can be aborted.
	Aborting bool `json:"aborting,omitempty"`
}

// TransferState is one transfer's progress.
type TransferState struct {
	From   base.GroupID `json:"from"`
	To     base.GroupID `json:"to"`
	Ranges []ring.Range `json:"ranges"`
	Phase  string       `json:"phase"`
	// Keys counts the keys copied so far; Total the keys found in the
	// ranges when the source was fenced.
	Keys  uint64 `json:"keys"`
	Total uint64 `json:"total,omitempty"`
	// FenceIndex is the source's log index of its fence, and FenceSeq the
	// newest change of its history then: the destination's history
	// records it when it takes the ranges over (store.Takeover).
	FenceIndex uint64 `json:"fence_index,omitempty"`
	FenceSeq   uint64 `json:"fence_seq,omitempty"`
	// FenceFloor is a modify index above every one the source gave before
	// its fence: the destination's go above it.
	FenceFloor uint64 `json:"fence_floor,omitempty"`
}

// transfer returns the transfer from one group to another, or nil.
func (m *Migration) transfer(from, to base.GroupID) *TransferState {
	for i := range m.Transfers {
		if m.Transfers[i].From == from && m.Transfers[i].To == to {
			return &m.Transfers[i]
		}
	}
	return nil
}

// Sourcing reports whether group g gives ranges away in the migration.
func (m *Migration) Sourcing(g base.GroupID) bool {
	for _, t := range m.Transfers {
		if t.From == g && t.Phase != PhaseDone {
			return true
		}
	}
	return false
}

func (m *Migration) clone() *Migration {
	c := *m
	c.Transfers = append([]TransferState(nil), m.Transfers...)
	return &c
}

// startMigration applies a migrate_start command: the change must apply
// to the current ring and no other change may be in motion.
func startMigration(cur *Layout, next *Layout, change RingChange) error {
	if cur.Migration != nil {
		return fmt.Errorf("%w: a ring change is in progress (%s); wait for it to finish", base.ErrConflict, cur.Migration.Change)
	}
	if cur.Restore != nil {
		return fmt.Errorf("%w: a restore is in progress (%s); change the ring once it is done", base.ErrConflict, cur.Restore.ID)
	}
	if change.Add != nil {
		for _, id := range cur.Retired {
			if id == change.Add.Group {
				return fmt.Errorf("%w: group id %d belonged to a retired group; choose another", base.ErrConflict, id)
			}
		}
	}
	nr, _, err := change.Next(cur.ring)
	if err != nil {
		return err
	}
	m := &Migration{Change: change, Next: nr.State()}
	for _, mv := range ring.Moves(cur.ring, nr) {
		t := m.transfer(base.GroupID(mv.From), base.GroupID(mv.To))
		if t == nil {
			m.Transfers = append(m.Transfers, TransferState{From: base.GroupID(mv.From), To: base.GroupID(mv.To), Phase: PhaseCopy})
			t = &m.Transfers[len(m.Transfers)-1]
		}
		t.Ranges = append(t.Ranges, mv.Range)
	}
	switch {
	case change.Add != nil:
		reps := cur.PlaceNewGroup(change.Add.Group)
		if len(reps) == 0 {
			return fmt.Errorf("%w: no node can hold a new group (every node is being drained)", base.ErrConflict)
		}
		next.Groups = append(next.Groups, GroupInfo{ID: change.Add.Group, Replicas: reps, Bootstrap: reps})
	case change.Remove != 0:
		m.Retire = change.Remove
	}
	next.Migration, next.next = m, nr
	return nil
}

// MigrationPhase records a transfer's progress; phases only move forward.
type MigrationPhase struct {
	From, To   base.GroupID
	Phase      string
	Keys       uint64
	Total      uint64
	FenceIndex uint64
	FenceSeq   uint64
	FenceFloor uint64
}

func advanceMigration(next *Layout, p MigrationPhase) error {
	if next.Migration == nil {
		return fmt.Errorf("%w: no ring change in progress", base.ErrConflict)
	}
	if next.Migration.Aborting && (p.Phase == PhaseFlipped || p.Phase == PhaseDone) {
		return fmt.Errorf("%w: the ring change is being aborted", base.ErrConflict)
	}
	m := next.Migration.clone()
	t := m.transfer(p.From, p.To)
	if t == nil {
		return fmt.Errorf("%w: no transfer from group %d to %d", base.ErrBadRequest, p.From, p.To)
	}
	order := map[string]int{PhaseCopy: 0, PhaseFenced: 1, PhaseFlipped: 2, PhaseDone: 3}
	to, ok := order[p.Phase]
	if !ok || to < order[t.Phase] {
		return fmt.Errorf("%w: transfer %d->%d cannot go from %s to %q", base.ErrConflict, p.From, p.To, t.Phase, p.Phase)
	}
	t.Phase, t.Keys = p.Phase, p.Keys
	if p.Total > 0 {
		t.Total = p.Total
	}
	if p.FenceIndex > 0 {
		t.FenceIndex = p.FenceIndex
	}
	if p.FenceSeq > 0 {
		t.FenceSeq = p.FenceSeq
	}
	if p.FenceFloor > 0 {
		t.FenceFloor = p.FenceFloor
	}
	next.Migration = m
	return nil
}

// abortMigration marks the change for undoing; refused once any transfer
// has flipped (its destination may hold writes the source never saw).
func abortMigration(next *Layout) error {
	m := next.Migration
	if m == nil {
		return fmt.Errorf("%w: no ring change in progress", base.ErrNotFound)
	}
	for _, t := range m.Transfers {
		if t.Phase == PhaseFlipped || t.Phase == PhaseDone {
			return fmt.Errorf("%w: the ranges from group %d to %d have already moved; let the change finish, then make the opposite one", base.ErrConflict, t.From, t.To)
		}
	}
	m = m.clone()
	m.Aborting = true
	next.Migration = m
	return nil
}

// endAbortedMigration drops an aborted change once the mover has undone
// it: the ring stays, and a group the change created is retired.
func endAbortedMigration(next *Layout) error {
	m := next.Migration
	if m == nil || !m.Aborting {
		return fmt.Errorf("%w: no aborted ring change", base.ErrConflict)
	}
	if m.Change.Add != nil {
		groups := next.Groups[:0]
		for _, g := range next.Groups {
			if g.ID != m.Change.Add.Group {
				groups = append(groups, g)
			}
		}
		next.Groups = groups
		next.Retired = append(next.Retired, m.Change.Add.Group)
		delete(next.Leaders, m.Change.Add.Group)
	}
	next.Migration, next.next = nil, nil
	return nil
}

// endMigration installs the new ring once every transfer is done.
func endMigration(next *Layout) error {
	m := next.Migration
	if m == nil {
		return fmt.Errorf("%w: no ring change in progress", base.ErrConflict)
	}
	if m.Aborting {
		return fmt.Errorf("%w: the ring change is being aborted", base.ErrConflict)
	}
	for _, t := range m.Transfers {
		if t.Phase != PhaseDone {
			return fmt.Errorf("%w: transfer %d->%d is at %s", base.ErrConflict, t.From, t.To, t.Phase)
		}
	}
	next.Ring, next.ring = m.Next, next.next
	next.Migration, next.next = nil, nil
	groups := next.Groups[:0]
	for _, g := range next.Groups {
		g.Bootstrap = nil // established: later replicas join as voters
		if g.ID != m.Retire {
			groups = append(groups, g)
		}
	}
	next.Groups = groups
	if m.Retire != 0 {
		next.Retired = append(next.Retired, m.Retire)
		delete(next.Leaders, m.Retire)
	}
	return nil
}
