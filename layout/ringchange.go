package layout

import (
	"fmt"
	"math"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/ring"
)

// RingChange is one change to the ring: exactly one of its fields is set.
type RingChange struct {
	// Add puts a new group on the ring with a weight.
	Add *GroupWeight `json:"add,omitempty"`
	// Remove retires a group; its keys go to the others.
	Remove base.GroupID `json:"remove,omitempty"`
	// Weight changes an existing group's weight.
	Weight *GroupWeight `json:"weight,omitempty"`
}

// GroupWeight is a group with a weight.
type GroupWeight struct {
	Group  base.GroupID `json:"group"`
	Weight int          `json:"weight"`
}

func (c RingChange) String() string {
	switch {
	case c.Add != nil:
		return fmt.Sprintf("add group %d with weight %d", c.Add.Group, c.Add.Weight)
	case c.Weight != nil:
		return fmt.Sprintf("set group %d's weight to %d", c.Weight.Group, c.Weight.Weight)
	default:
		return fmt.Sprintf("remove group %d", c.Remove)
	}
}

// Next returns the ring after the change and the share of the key space
// that ideally moves (the least any change giving every group its
// weight's share could move).
func (c RingChange) Next(cur *ring.Ring) (*ring.Ring, float64, error) {
	if err := c.Check(); err != nil {
		return nil, 0, err
	}
	total := 0
	for _, g := range cur.Groups() {
		total += cur.Weight(g)
	}
	var nr *ring.Ring
	var ideal float64
	var err error
	switch {
	case c.Add != nil:
		nr, err = cur.AddGroup(base.GroupID(c.Add.Group), c.Add.Weight)
		ideal = float64(c.Add.Weight) / float64(total+c.Add.Weight)
	case c.Remove != 0:
		if len(cur.Groups()) == 1 && cur.Weight(base.GroupID(c.Remove)) > 0 {
			return nil, 0, fmt.Errorf("%w: group %d is the last on the ring", base.ErrBadRequest, c.Remove)
		}
		nr, err = cur.RemoveGroup(base.GroupID(c.Remove))
		ideal = float64(cur.Weight(base.GroupID(c.Remove))) / float64(total)
	default:
		g := base.GroupID(c.Weight.Group)
		w0 := cur.Weight(g)
		nr, err = cur.SetWeight(g, c.Weight.Weight)
		ideal = math.Abs(float64(c.Weight.Weight)/float64(total-w0+c.Weight.Weight) - float64(w0)/float64(total))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	return nr, ideal, nil
}
