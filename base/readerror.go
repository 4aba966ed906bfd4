package base

import "errors"

// ReadError is err as a read or a wait reports it: the wire has one code
// (timeout) for a write of unknown outcome and a wait that ran out of
// time, and a read that timed out on another node changed nothing.
func ReadError(err error) error {
	if errors.Is(err, ErrOutcomeUnknown) {
		return Remote(err.Error(), ErrTimeout)
	}
	return err
}
