package raftnode

import (
	"errors"

	"github.com/ringkv/ringkv/base"
)

// readError is err as a read or a wait reports it: the wire has one code
// (timeout) for a write of unknown outcome and a wait that ran out of
// time, and a read that timed out on another node changed nothing.
func readError(err error) error {
	if errors.Is(err, base.ErrOutcomeUnknown) {
		return base.Remote(err.Error(), base.ErrTimeout)
	}
	return err
}
