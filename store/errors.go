package store

import "errors"

// Errors returned by the store.
var (
	// ErrNotFound is returned by Get for an absent key.
	ErrNotFound = errors.New("store: key not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
	// ErrRestoreMismatch is returned by Restore when the image inside a
	// checkpoint disagrees with the checkpoint's header.
	ErrRestoreMismatch = errors.New("store: checkpoint image disagrees with its header")
)
