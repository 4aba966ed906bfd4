package store

import "errors"

// Errors returned by the store.
var (
	// ErrNotFound is returned by Get for an absent key.
	ErrNotFound = errors.New("store: key not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
	// ErrTorn is returned by Open when the state file was being written
	// without fsync when the machine went down; the caller must discard it
	// and rebuild from a snapshot and the Raft log.
	ErrTorn = errors.New("store: state file may be torn by a machine crash")
	// ErrRestoreMismatch is returned by Restore when the image inside a
	// checkpoint disagrees with the checkpoint's header.
	ErrRestoreMismatch = errors.New("store: checkpoint image disagrees with its header")
	// ErrStaleMover is a moving command's outcome when a mover of a later
	// term has already acted on this store (see Moving.Term).
	ErrStaleMover = errors.New("store: moving command from a deposed mover")
)
