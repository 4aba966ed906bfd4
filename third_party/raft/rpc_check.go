package raft

import (
	"errors"
	"fmt"
)

// Bounds on what an incoming RPC may carry (a ringkv addition). Raft obeys
// any term a peer sends: a term of 2^64-1 wraps at the next election and
// leaves the group without a leader for good. No cluster reaches these
// bounds (2^48 elections at one a millisecond take nine thousand years),
// so a larger value is a damaged or forged packet.
const (
	MaxRPCTerm  = 1 << 48
	MaxRPCIndex = 1 << 60
)

// ErrBadRPC is returned by CheckRPC.
var ErrBadRPC = errors.New("raft: refused RPC")

// CheckRPC refuses an RPC that raft would act on to its harm: a term or
// index past the bounds above, entries that do not follow one another, a
// log entry of a type raft panics on when it commits, or a configuration
// that does not decode (raft panics) or
// names no voter (the group could never elect a leader again). The
// network transport runs it on every request before raft sees it and
// closes the connection of one it refuses.
func CheckRPC(cmd interface{}) error {
	bound := func(what string, v, limit uint64) error {
		if v > limit {
			return fmt.Errorf("%w: %s %d is past %d", ErrBadRPC, what, v, limit)
		}
		return nil
	}
	switch req := cmd.(type) {
	case *AppendEntriesRequest:
		if err := errors.Join(bound("term", req.Term, MaxRPCTerm), bound("previous term", req.PrevLogTerm, MaxRPCTerm),
			bound("previous index", req.PrevLogEntry, MaxRPCIndex), bound("commit index", req.LeaderCommitIndex, MaxRPCIndex)); err != nil {
			return err
		}
		prevTerm := req.PrevLogTerm
		for i, e := range req.Entries {
			if e == nil {
				return fmt.Errorf("%w: a nil entry", ErrBadRPC)
			}
			if err := errors.Join(bound("entry term", e.Term, MaxRPCTerm), bound("entry index", e.Index, MaxRPCIndex)); err != nil {
				return err
			}
			// Entries follow the previous one without a gap, in terms
			// that never go down nor pass the sender's: a gap left the
			// follower committing indexes it does not hold, and raft
			// panics when it cannot read a committed entry.
			if e.Index != req.PrevLogEntry+1+uint64(i) {
				return fmt.Errorf("%w: entry %d of an append after index %d is at index %d", ErrBadRPC, i, req.PrevLogEntry, e.Index)
			}
			if e.Term < prevTerm || e.Term > req.Term {
				return fmt.Errorf("%w: entry %d of term %d after term %d, sent in term %d", ErrBadRPC, e.Index, e.Term, prevTerm, req.Term)
			}
			prevTerm = e.Term
			switch e.Type {
			case LogCommand, LogNoop, LogBarrier, LogAddPeerDeprecated, LogRemovePeerDeprecated:
			case LogConfiguration:
				if err := checkEncodedConfiguration(e.Data); err != nil {
					return fmt.Errorf("entry %d: %w", e.Index, err)
				}
			default:
				return fmt.Errorf("%w: entry %d of unknown type %d", ErrBadRPC, e.Index, e.Type)
			}
		}
	case *RequestVoteRequest:
		return errors.Join(bound("term", req.Term, MaxRPCTerm), bound("last term", req.LastLogTerm, MaxRPCTerm),
			bound("last index", req.LastLogIndex, MaxRPCIndex))
	case *RequestPreVoteRequest:
		return errors.Join(bound("term", req.Term, MaxRPCTerm), bound("last term", req.LastLogTerm, MaxRPCTerm),
			bound("last index", req.LastLogIndex, MaxRPCIndex))
	case *InstallSnapshotRequest:
		if err := errors.Join(bound("term", req.Term, MaxRPCTerm), bound("last term", req.LastLogTerm, MaxRPCTerm),
			bound("last index", req.LastLogIndex, MaxRPCIndex), bound("configuration index", req.ConfigurationIndex, MaxRPCIndex)); err != nil {
			return err
		}
		if req.Size < 0 {
			return fmt.Errorf("%w: snapshot of %d bytes", ErrBadRPC, req.Size)
		}
		if req.SnapshotVersion > 0 {
			return checkEncodedConfiguration(req.Configuration)
		}
	}
	return nil
}

// checkEncodedConfiguration refuses a configuration that does not decode
// or that raft's own checkConfiguration refuses (no voter, an empty or
// repeated id or address).
func checkEncodedConfiguration(b []byte) error {
	var c Configuration
	if err := decodeMsgPack(b, &c); err != nil {
		return fmt.Errorf("%w: configuration does not decode: %v", ErrBadRPC, err)
	}
	for _, s := range c.Servers {
		if s.Suffrage != Voter && s.Suffrage != Nonvoter && s.Suffrage != Staging {
			return fmt.Errorf("%w: server %s of unknown suffrage %d", ErrBadRPC, s.ID, s.Suffrage)
		}
	}
	if err := checkConfiguration(c); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRPC, err)
	}
	return nil
}
