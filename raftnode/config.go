package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/logstore"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/transport"
)

// MaxNodes is the largest cluster a node may join: every node hosts the
// metadata group (at most MaxMetaVoters of them as voters).
const MaxNodes = 64

// MaxMetaVoters bounds the voters of the metadata group; nodes beyond
// them follow it as non-voters.
const MaxMetaVoters = 5

// Timing holds Raft's timing settings.
type Timing struct {
	Heartbeat     time.Duration
	Election      time.Duration
	LeaderLease   time.Duration
	Commit        time.Duration
	ApplyDeadline time.Duration // default deadline of a request without one
}

// DefaultTiming suits a LAN or a single machine.
func DefaultTiming() Timing {
	return Timing{
		Heartbeat:     1000 * time.Millisecond,
		Election:      1000 * time.Millisecond,
		LeaderLease:   500 * time.Millisecond,
		Commit:        50 * time.Millisecond,
		ApplyDeadline: 10 * time.Second,
	}
}

// Config configures a Node. Build it with DefaultConfig and check it with
// Validate; a Node never changes it after construction.
type Config struct {
	ID            base.NodeID
	HTTPAddr      string // advertised HTTP address (host:port) of this node
	RaftAddr      string // listen address for all Raft traffic
	AdvertiseRaft string // what peers dial; RaftAddr when empty
	// FaultVia, for fault-injection runs, makes this node dial each
	// peer Raft address (key) at another address (value): links that
	// emulate the network between pairs of nodes. Empty: direct.
	FaultVia map[string]string
	// PeerTLS, when set, makes every connection between nodes (Raft of
	// every group, forwarding, node-to-node HTTP) mutually authenticated
	// TLS. Every node of a cluster must have it, or none.
	PeerTLS *transport.PeerTLS
	// ACL turns access control on in a cluster this node bootstraps, and
	// is what this node tells a cluster it joins, which refuses it unless
	// both agree. A node enforces access control when its cluster's layout
	// has it on, whatever this says.
	ACL bool
	// JoinToken is the token this node joins a cluster with access
	// control with (it needs operator write); unused otherwise.
	JoinToken   string
	DataDir     string
	Join        []string // HTTP URLs of existing nodes
	Groups      int      // data groups created at bootstrap
	Replication int      // replicas per group, set at bootstrap (0: layout.DefaultReplication)
	Weight      float64  // this node's capacity relative to others (0: 1)
	VNodes      int      // virtual nodes per unit of weight

	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// LogStore is where groups keep their Raft logs: logstore.KindWAL or
	// logstore.KindBolt. Empty: the store the data dir was created with,
	// or logstore.Kinds[0] for a new one. A data dir keeps its store: a
	// different one given for it is an error.
	LogStore string
	// WatchHistory and WatchHistoryBytes bound the change history each
	// group keeps for watches and blocking queries (store.Options'
	// HistoryEntries and HistoryBytes; 0: their defaults).
	WatchHistory      int
	WatchHistoryBytes int64

	Timing Timing
	// ProposalWaves bounds the batches of commands a group leader has in
	// flight at once; commands arriving meanwhile wait and go together.
	ProposalWaves int
	// ProposalLinger is how long a busy group leader at most lets writes
	// gather before it sends its next wave: after a wave of at least
	// lingerMinWave writes, it waits until as many writes as that wave
	// carried are queued (those that came during its flight count), or
	// three of its recent waves' flights (the time from hand-over to raft
	// until applied), at most this long.
	// Fewer, larger log entries cost less CPU per write (each entry is an
	// fsync'd append on every replica); a write waits at most this much
	// longer. 0 disables.
	ProposalLinger time.Duration
	// BalanceInterval is how often a leader checks whether it should hand a
	// group to its preferred leader; 0 disables balancing.
	BalanceInterval time.Duration
	// VerifyInterval is how often each group this node leads is verified
	// (every replica's Merkle root compared at one index, a divergent one
	// repaired); 0 disables periodic verification.
	VerifyInterval time.Duration
	// MerkleDepth is the depth of the Merkle tree of a group's state when
	// this node creates it (2^depth leaves); 0 means the default. Every
	// node must use the same depth: replicas of different depths cannot be
	// compared, and a verification repairs the odd one to the leader's.
	MerkleDepth int
	// ApplyCommitDelay is how long entries applied to a group's state may
	// wait for a bbolt commit that covers several (lists and snapshots
	// commit at once); 0 commits every apply.
	ApplyCommitDelay time.Duration
	// MoveStall is how long a replica move waits for a destination that
	// does not answer before it is undone; 0 means DefaultMoveStall.
	MoveStall time.Duration

	Logger *slog.Logger
	// OnFatal is called when a state machine cannot apply a committed entry
	// (an I/O error). The node must stop rather than diverge; the default
	// panics.
	OnFatal func(error)
	// OnRemoved, when set, is called once the node has learned that the
	// cluster removed it (from peer, whose layout no longer lists it). The
	// node has recorded that in its data dir and will not start on it
	// again; ringkvd stops.
	OnRemoved func(peer base.NodeID)
	// Knobs are hooks for tests; the zero value does nothing.
	Knobs TestingKnobs
}

// TestingKnobs are the hooks tests use to hold a node at a chosen point or
// make it answer as an earlier release would. Each is nil in production.
type TestingKnobs struct {
	// OnTransfer, when set, is called by the node moving keys as a
	// transfer reaches each phase (copy, fenced, flipped), before it acts
	// on it. Tests use it to hold a ring change at a chosen point.
	OnTransfer func(from, to base.GroupID, phase string)
	// OnReplicaMove, when set, is called by the node moving a replica
	// after each step that did not finish the move, with that step's
	// outcome. Tests use it to hold a move, ctx ending when the node stops.
	OnReplicaMove func(ctx context.Context, mv layout.ReplicaMove, progress string)
	// OnRestoreInstall, when set, is called by a node running a restore
	// before it installs group g's restored state; an error fails the
	// restore there. Tests use it to fail one midway.
	OnRestoreInstall func(g base.GroupID) error
	// OnAsyncWrite, when set, is called by a group leader once an
	// asynchronous write has been let through as asynchronous, before it
	// is appended. Tests use it to hold a write against a fence.
	OnAsyncWrite func(g base.GroupID, key []byte)
	// OnMetaApply, when set, is called before the metadata state machine
	// applies the entry at index. Tests use it to hold a node's layout
	// behind its log.
	OnMetaApply func(index uint64)
	// OnServe, when set, is called with the op of each request this node
	// serves for another (Serve); an error refuses the request with it.
	// Tests use it to make a node answer as an earlier release would.
	OnServe func(op string) error
	// ProtocolVersion, when set, is the node-to-node protocol version this
	// node says it speaks (protocol.Version otherwise). Tests use it, with
	// OnServe, to make a node look like an earlier release.
	ProtocolVersion func() int
}

// DefaultConfig returns a single-node configuration on the default ports.
func DefaultConfig() Config {
	return Config{
		ID:                "node1",
		HTTPAddr:          "127.0.0.1:7070",
		RaftAddr:          "127.0.0.1:7071",
		DataDir:           "./data",
		Groups:            3,
		VNodes:            128,
		SnapshotThreshold: 16384,
		SnapshotInterval:  10 * time.Second,
		TrailingLogs:      10240,
		Timing:            DefaultTiming(),
		ProposalWaves:     1,
		ProposalLinger:    DefaultProposalLinger,
		BalanceInterval:   2 * time.Second,
		ApplyCommitDelay:  store.DefaultCommitDelay,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case layout.CheckNodeID(c.ID) != nil:
		return fmt.Errorf("config: %w", layout.CheckNodeID(c.ID))
	case c.HTTPAddr == "":
		return errors.New("config: http address is empty")
	case c.RaftAddr == "":
		return errors.New("config: raft address is empty")
	case c.DataDir == "":
		return errors.New("config: data dir is empty")
	case c.WatchHistory < 0 || c.WatchHistoryBytes < 0:
		return errors.New("config: the watch history's bounds cannot be negative")
	case c.Groups < 1 || c.Groups > 1024:
		return fmt.Errorf("config: groups %d out of range [1, 1024]", c.Groups)
	case c.Replication < 0 || c.Replication > layout.MaxReplication:
		return fmt.Errorf("config: replicas %d out of range [1, %d]", c.Replication, layout.MaxReplication)
	case c.Weight < 0 || c.Weight > layout.MaxNodeWeight:
		return fmt.Errorf("config: weight %v out of range (0, %d]", c.Weight, layout.MaxNodeWeight)
	case c.VNodes < 1 || c.VNodes > 4096:
		return fmt.Errorf("config: vnodes %d out of range [1, 4096]", c.VNodes)
	case c.SnapshotThreshold < 1:
		return errors.New("config: snapshot threshold must be positive")
	case c.SnapshotInterval <= 0:
		return errors.New("config: snapshot interval must be positive")
	case c.Timing.Heartbeat <= 0 || c.Timing.Election <= 0 || c.Timing.LeaderLease <= 0 || c.Timing.ApplyDeadline <= 0:
		return errors.New("config: raft timings must be positive")
	case c.ApplyCommitDelay < 0 || c.ApplyCommitDelay > time.Second:
		return errors.New("config: apply commit delay must be between 0 and 1s")
	case c.MoveStall < 0:
		return errors.New("config: move stall must not be negative")
	case c.LogStore != "" && !slices.Contains(logstore.Kinds, c.LogStore):
		return fmt.Errorf("config: log store %q: want one of %s", c.LogStore, strings.Join(logstore.Kinds, ", "))
	case c.ProposalWaves < 1:
		return errors.New("config: proposal waves must be at least 1")
	case c.ProposalLinger < 0 || c.ProposalLinger > time.Second:
		return errors.New("config: proposal linger must be between 0 and 1s")
	case c.MerkleDepth != 0 && (c.MerkleDepth < snapshot.MinTreeDepth || c.MerkleDepth > snapshot.MaxTreeDepth):
		return fmt.Errorf("config: merkle depth %d outside [%d, %d]", c.MerkleDepth, snapshot.MinTreeDepth, snapshot.MaxTreeDepth)
	case c.Timing.LeaderLease > c.Timing.Heartbeat:
		return errors.New("config: leader lease must not exceed the heartbeat timeout")
	}
	return nil
}

// DefaultProposalLinger is the default ProposalLinger.
const DefaultProposalLinger = 12 * time.Millisecond

// DefaultMoveStall is how long a replica move waits for a silent
// destination by default.
const DefaultMoveStall = 30 * time.Second

func (c Config) moveStall() time.Duration {
	if c.MoveStall > 0 {
		return c.MoveStall
	}
	return DefaultMoveStall
}

func (c Config) advertiseRaft() string {
	if c.AdvertiseRaft != "" {
		return c.AdvertiseRaft
	}
	return c.RaftAddr
}
