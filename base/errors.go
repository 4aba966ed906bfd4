package base

import (
	"errors"
	"fmt"
)

// Sentinel errors of ringkv's operations. Callers test them with errors.Is; the
// HTTP layer maps each to a status through Code.
var (
	// ErrNotFound: the key (or node) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCASFailed: a compare-and-swap did not match; see CASFailedError.
	ErrCASFailed = errors.New("compare-and-swap index did not match")
	// ErrNotLeader: this node does not lead the group; see NotLeaderError.
	ErrNotLeader = errors.New("not the group leader")
	// ErrNoLeader: the group has no known leader right now.
	ErrNoLeader = errors.New("group has no leader")
	// ErrUnavailable: the request was not carried out (no quorum, shutting
	// down, enqueue timeout); it is safe to retry.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown: a write was proposed but its outcome is unknown (the
	// deadline passed or leadership was lost while waiting); it may or may not
	// have been committed.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrClusterFull: the cluster already has MaxNodes nodes.
	ErrClusterFull = errors.New("cluster is full")
	// ErrConflict: the request conflicts with the cluster's state.
	ErrConflict = errors.New("conflict")
	// ErrBadRequest: a forwarded request was malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrTimeout: a wait (for a commit, or for a replica to apply an index)
	// did not end in time; nothing was changed.
	ErrTimeout = errors.New("timed out")
	// ErrLost: an asynchronously acknowledged write will never commit: its
	// log position was taken by another entry after a leader change.
	ErrLost = errors.New("write lost")
	// ErrUnauthorized: access control is on and the request carries no
	// token where one is needed, or a token the cluster does not know.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the request's token does not allow it.
	ErrForbidden = errors.New("forbidden")
	// ErrMoved: the key's range belongs to another group now, or is being
	// handed to one; the request changed nothing and can be retried.
	ErrMoved = errors.New("key range is moving between groups")
	// ErrCompacted: a watch position is older than the history a group
	// keeps, or from another history; see CompactedError.
	ErrCompacted = errors.New("history compacted")
)

// NotLeaderError reports the group's leader as this node knows it.
type NotLeaderError struct {
	Group  GroupID
	Leader NodeID // empty when unknown
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return fmt.Sprintf("group %d: not the leader, leader unknown", e.Group)
	}
	return fmt.Sprintf("group %d: not the leader, leader is %s", e.Group, e.Leader)
}

// Unwrap makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// CASFailedError carries the key's current modify index (0: absent).
type CASFailedError struct {
	Current uint64
}

func (e *CASFailedError) Error() string {
	return fmt.Sprintf("compare-and-swap failed: current index is %d", e.Current)
}

// Unwrap makes errors.Is(err, ErrCASFailed) hold.
func (e *CASFailedError) Unwrap() error { return ErrCASFailed }

// CompactedError names the group whose history no longer serves a
// position, and the oldest change it keeps. Ahead says the position is
// past the newest change, Last (from another history, such as before a
// restore). Reason, when set, is the whole message, as another node said
// it.
type CompactedError struct {
	Group  GroupID
	First  uint64
	Ahead  bool
	Last   uint64
	Reason string
}

func (e *CompactedError) Error() string {
	switch {
	case e.Reason != "":
		return e.Reason
	case e.Ahead:
		return fmt.Sprintf("group %d: the position asked for is past the newest change, %d: it comes from another history of the group (before a restore?)", e.Group, e.Last)
	}
	return fmt.Sprintf("group %d: the changes asked for are no longer kept; the oldest kept is %d", e.Group, e.First)
}

// Unwrap makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// Error codes: the words used in JSON error bodies and across forwarding.
const (
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeCASFailed    = "cas_failed"
	CodeNotLeader    = "not_leader"
	CodeNoLeader     = "no_leader"
	CodeUnavailable  = "unavailable"
	CodeTimeout      = "timeout"
	CodeClusterFull  = "cluster_full"
	CodeConflict     = "conflict"
	CodeLost         = "lost"
	CodeMoved        = "moved"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeCompacted    = "compacted"
	CodeInternal     = "internal"
)

var codes = []struct {
	err  error
	code string
}{
	{ErrBadRequest, CodeBadRequest},
	{ErrNotFound, CodeNotFound},
	{ErrCASFailed, CodeCASFailed},
	{ErrNotLeader, CodeNotLeader},
	{ErrNoLeader, CodeNoLeader},
	{ErrUnavailable, CodeUnavailable},
	{ErrShutdown, CodeUnavailable},
	{ErrOutcomeUnknown, CodeTimeout},
	{ErrClusterFull, CodeClusterFull},
	{ErrConflict, CodeConflict},
	{ErrTimeout, CodeTimeout},
	{ErrLost, CodeLost},
	{ErrMoved, CodeMoved},
	{ErrUnauthorized, CodeUnauthorized},
	{ErrForbidden, CodeForbidden},
	{ErrCompacted, CodeCompacted},
}

// Code returns the error code for err: one table, used by the HTTP layer and
// by forwarding.
func Code(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// WireError is the JSON form of an error, as sent between nodes and to
// clients.
type WireError struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Index  uint64 `json:"index,omitempty"`
	Group  uint32 `json:"group,omitempty"`
	Leader string `json:"leader,omitempty"`
}

// ToWire describes err for the wire.
func ToWire(err error) WireError {
	w := WireError{Error: err.Error(), Code: Code(err)}
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		w.Group, w.Leader = uint32(nl.Group), string(nl.Leader)
	}
	var cf *CASFailedError
	if errors.As(err, &cf) {
		w.Index = cf.Current
	}
	var ce *CompactedError
	if errors.As(err, &ce) {
		w.Group, w.Index = uint32(ce.Group), ce.First
	}
	return w
}

// FromWire turns a wire error back into an error that matches the sentinels.
func FromWire(w WireError) error {
	switch w.Code {
	case CodeNotLeader:
		return &NotLeaderError{Group: GroupID(w.Group), Leader: NodeID(w.Leader)}
	case CodeCASFailed:
		return &CASFailedError{Current: w.Index}
	case CodeCompacted:
		return &CompactedError{Group: GroupID(w.Group), First: w.Index, Reason: w.Error}
	}
	for _, c := range codes {
		if c.code == w.Code {
			return &remoteError{msg: w.Error, err: c.err}
		}
	}
	return errors.New(w.Error)
}

// remoteError is an error another node reported: it reads as that node
// wrote it (which already names the sentinel's words, so prefixing them
// again would say them twice) and matches the sentinel of its code.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// Remote is an error that reads msg and matches sentinel, as an error
// another node reported does.
func Remote(msg string, sentinel error) error { return &remoteError{msg: msg, err: sentinel} }
