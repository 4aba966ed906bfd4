package ring

import "errors"

// Errors returned by ring operations and by FromState.
var (
	// ErrGroupExists is returned by AddGroup for an id already on the ring.
	ErrGroupExists = errors.New("ring: group already on the ring")
	// ErrNoGroup is returned by RemoveGroup for an id not on the ring.
	ErrNoGroup = errors.New("ring: no such group")
	// ErrBadWeight is returned for a weight outside [1, MaxWeight].
	ErrBadWeight = errors.New("ring: weight out of range")
	// ErrBadState is returned by FromState for an inconsistent state.
	ErrBadState = errors.New("ring: inconsistent state")
	// ErrNoChange is returned by SetWeight for the weight a group has.
	ErrNoChange = errors.New("ring: no change")
	// ErrEmpty is returned by Lookup on a ring without groups.
	ErrEmpty = errors.New("ring: no groups")
)
