package raftnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/logstore"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/store"
)

// replica is this node's member of one Raft group: the raft.Raft, its log,
// snapshots and transport, and (for data groups) the bbolt state machine.
type replica struct {
	id     base.GroupID
	node   *Node
	dir    string
	raft   *raft.Raft
	logs   logstore.Store
	cache  raft.LogStore
	notify *appendNotifier    // wraps cache; raft stores through it
	snaps  raft.SnapshotStore // a *stateSnapshots for data groups
	trans  *raft.NetworkTransport
	prop   *proposer
	st     *store.Store // data groups only
	fsm    *dataFSM     // data groups only
	// asyncMu orders asynchronous writes against fences (see protocol.OpFence).
	asyncMu sync.RWMutex
	meta    *metaFSM // metadata group only
	closed  atomic.Bool

	// readyTerm is the term in which this replica, as leader, has committed
	// an entry (a barrier): until then it may not serve linearizable reads.
	readyTerm atomic.Uint64
	barrierMu sync.Mutex

	// divergences counts verifications that found this replica's root
	// different from its group's; repairs the reinstallations that
	// followed; lastRepair is the latest outcome.
	divergences atomic.Uint64
	repairs     atomic.Uint64
	lastRepair  atomic.Pointer[api.Repair]

	// writes counts the writes this replica took as leader; writeRate is
	// their recent rate per second (float64 bits), for load balancing.
	writes    atomic.Uint64
	writeRate atomic.Uint64

	leaseMu    sync.Mutex
	leaseTerm  uint64
	leaseUntil time.Time
}

// shutdownWait bounds how long a replica's shutdown waits for raft's
// goroutines.
var shutdownWait = 10 * time.Second

func groupDir(dataDir string, id base.GroupID) string {
	if id == base.MetaGroup {
		return filepath.Join(dataDir, "meta")
	}
	return filepath.Join(dataDir, "groups", fmt.Sprint(id))
}

// hasState reports whether dir holds a Raft log.
func hasState(dir string) bool { return logstore.Detect(dir) != "" }

// openReplica opens (creating if needed) the replica of group id. With
// boot, a group with no state yet starts with those voters (every one of
// them is given the same list).
func (n *Node) openReplica(id base.GroupID, boot []raft.Server) (*replica, error) {
	dir := groupDir(n.cfg.DataDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &replica{id: id, node: n, dir: dir}
	ok := false
	defer func() {
		if !ok {
			r.closeStores()
		}
	}()
	logger := newHCLog(n.log.With("group", uint32(id)), "raft")
	files, err := n.openLog(r, logger)
	if err != nil {
		return nil, err
	}
	conf := n.raftConfig(logger)
	fsm, err := n.openFSM(r, files, conf)
	if err != nil {
		return nil, err
	}

	layer, err := n.mux.Layer(id)
	if err != nil {
		return nil, err
	}
	r.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 8,
		Timeout: 10 * time.Second,
		Logger:  logger,
	})

	if len(boot) > 0 {
		existing, err := raft.HasExistingState(r.cache, r.logs, r.snaps)
		if err != nil {
			r.trans.Close()
			return nil, err
		}
		if !existing {
			cfg := raft.Configuration{Servers: boot}
			if err := raft.BootstrapCluster(conf, r.cache, r.logs, r.snaps, r.trans, cfg); err != nil {
				r.trans.Close()
				return nil, fmt.Errorf("group %d: bootstrap: %w", id, err)
			}
		}
	}
	t0 := time.Now()
	r.notify = newAppendNotifier(r.cache)
	r.raft, err = raft.NewRaft(conf, fsm, r.notify, r.logs, r.snaps, r.trans)
	n.log.Debug("raft started", "group", uint32(id), "took", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		r.trans.Close()
		return nil, fmt.Errorf("group %d: start raft: %w", id, err)
	}
	r.prop = newProposer(r.raft, n.cfg.ProposalWaves, n.cfg.ProposalLinger, r.notify)
	if r.fsm != nil {
		bound := r.boundTrailingLogs
		r.fsm.beforePersist.Store(&bound)
	}
	ok = true
	return r, nil
}

// openLog opens r's Raft log, its cache and its snapshot files.
func (n *Node) openLog(r *replica, logger hclog.Logger) (*raft.FileSnapshotStore, error) {
	id, dir := r.id, r.dir
	var err error
	openStart := time.Now()
	// A group keeps the store its log was created in; a new one takes
	// the node's.
	kind := logstore.Detect(dir)
	if kind == "" {
		kind = n.logStore
	}
	r.logs, err = logstore.Open(kind, dir, int(max(1, min(n.cfg.TrailingLogs, maxTrailingSizes))), n.log.With("group", uint32(id)),
		logger.Named("wal"), n.fatal)
	if err != nil {
		return nil, fmt.Errorf("group %d: open log: %w", id, err)
	}
	n.log.Debug("log store opened", "group", uint32(id), "store", kind, "took", time.Since(openStart).Round(time.Millisecond))
	r.cache = logstore.NewCache(r.logs, logstore.CacheEntries, logstore.CacheBytes)
	// A data group keeps one snapshot, which holds no data (see
	// stateSnapshots); the metadata group keeps two, its state is rebuilt
	// from the newest that restores.
	retain := 1
	if id == base.MetaGroup {
		retain = 2
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), retain, logger)
	if err != nil {
		return nil, fmt.Errorf("group %d: snapshot store: %w", id, err)
	}
	r.snaps = files
	return files, nil
}

// raftConfig is a group's Raft configuration from the node's.
func (n *Node) raftConfig(logger hclog.Logger) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.cfg.ID)
	conf.Logger = logger
	conf.HeartbeatTimeout = n.cfg.Timing.Heartbeat
	conf.ElectionTimeout = n.cfg.Timing.Election
	conf.LeaderLeaseTimeout = n.cfg.Timing.LeaderLease
	conf.CommitTimeout = n.cfg.Timing.Commit
	conf.SnapshotThreshold = n.cfg.SnapshotThreshold
	conf.SnapshotInterval = n.cfg.SnapshotInterval
	conf.TrailingLogs = n.cfg.TrailingLogs
	conf.BatchApplyCh = true
	conf.MaxAppendEntries = 256

	return conf
}

// openFSM opens r's state machine: the layout's for the metadata group,
// else the group's state file, rebuilt from a snapshot when an earlier
// release left it torn.
func (n *Node) openFSM(r *replica, files *raft.FileSnapshotStore, conf *raft.Config) (raft.FSM, error) {
	id, dir := r.id, r.dir
	openStart := time.Now()
	var err error
	var fsm raft.FSM
	if id == base.MetaGroup {
		r.meta = newMetaFSM()
		r.meta.before = n.cfg.Knobs.OnMetaApply
		fsm = r.meta
	} else {
		opts := store.DefaultOptions()
		opts.Group = uint32(id)
		opts.TreeDepth = n.cfg.MerkleDepth
		opts.KeyHash = ring.Hash
		opts.CommitDelay = n.cfg.ApplyCommitDelay
		opts.HistoryEntries, opts.HistoryBytes = n.cfg.WatchHistory, n.cfg.WatchHistoryBytes
		statePath := filepath.Join(dir, "state.db")
		r.st, err = store.Open(statePath, opts)
		if errors.Is(err, store.ErrTorn) {
			// An earlier release deferred the state file's syncs and the
			// machine went down: rebuild the file from that release's
			// newest snapshot, which holds the data, and the Raft log.
			if !hasDataSnapshot(files) {
				return nil, fmt.Errorf("group %d: %w, and no snapshot holds a copy of the data to rebuild it from", id, err)
			}
			n.log.Warn("state file may be torn by a machine crash; rebuilding it", "group", uint32(id), "err", err)
			if rmErr := removeState(statePath); rmErr != nil {
				return nil, rmErr
			}
			r.st, err = store.Open(statePath, opts)
		}
		if err != nil {
			return nil, err
		}
		snaps := &stateSnapshots{files: files, st: r.st}
		r.snaps = snaps
		n.log.Debug("state opened", "group", uint32(id), "took", time.Since(openStart).Round(time.Millisecond))
		if err := r.catchUpFromSnapshot(snaps); err != nil {
			return nil, err
		}
		// The bbolt state survives restarts: never rebuild it from the
		// snapshot at start-up; raft re-applies the log tail and the store
		// skips what it already holds.
		conf.NoSnapshotRestoreOnStart = true
		r.fsm = &dataFSM{st: r.st, log: n.log.With("group", uint32(id)), onFatal: n.fatal}
		fsm = r.fsm
	}
	return fsm, nil
}

// catchUpFromSnapshot restores the newest snapshot when the state file is
// behind it and the snapshot holds data (one received from a leader, or
// written by an earlier release), since raft will only replay the log after
// that snapshot. A marked snapshot cannot be ahead of a state file that
// was committed before it was written; if one is, the file was lost or
// replaced and the group refuses to start.
func (r *replica) catchUpFromSnapshot(snaps *stateSnapshots) error {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	latest := metas[0]
	if isStateMark(latest) {
		marked, err := snaps.markedIndex(latest.ID)
		if err != nil {
			return fmt.Errorf("group %d: %w", r.id, err)
		}
		if r.st.AppliedIndex() >= marked {
			return nil
		}
		// The state file is the only copy of what the log no longer
		// holds, and it is behind: it was replaced or lost.
		return fmt.Errorf("group %d: the state file %s is at index %d, behind the snapshot, which needs it at %d, and the log no longer holds the entries between: "+
			"put the group's state file back, or remove this node from the cluster and join it again with an empty data directory",
			r.id, r.st.Path(), r.st.AppliedIndex(), marked)
	}
	if r.st.AppliedIndex() >= latest.Index {
		return nil
	}
	_, rc, err := snaps.Open(latest.ID) // the stored data, since it has some
	if err != nil {
		return err
	}
	defer rc.Close()
	r.node.log.Info("state file behind newest snapshot, restoring it", "group", uint32(r.id),
		"state_index", r.st.AppliedIndex(), "snapshot_index", latest.Index)
	return r.st.Restore(rc)
}

// hasDataSnapshot reports whether the newest snapshot holds data.
func hasDataSnapshot(files raft.SnapshotStore) bool {
	metas, err := files.List()
	return err == nil && len(metas) > 0 && metas[0].Size > 0 && !isStateMark(metas[0])
}

func (r *replica) closeStores() {
	if r.st != nil {
		r.st.Close()
	}
	if r.logs != nil {
		r.logs.Close()
	}
}

// shutdown stops raft and closes the replica's files.
func (r *replica) shutdown() {
	if !r.closed.CompareAndSwap(false, true) {
		return
	}
	if r.raft != nil {
		// hashicorp/raft can leave a replication goroutine blocked for
		// good when a pipeline's decoder stops on a newer term while a
		// send waits for it (a leader stepping down under load); its
		// Shutdown then never returns. Its main loops have stopped by
		// then, so after a while the files are closed anyway.
		done := make(chan error, 1)
		f := r.raft.Shutdown()
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err != nil {
				r.node.log.Warn("raft shutdown", "group", uint32(r.id), "err", err)
			}
		case <-time.After(shutdownWait):
			r.node.log.Warn("raft shutdown did not finish; a replication goroutine is stuck, closing the replica anyway", "group", uint32(r.id), "waited", shutdownWait)
		}
	}
	if r.trans != nil {
		r.trans.Close()
	}
	r.closeStores()
}

func (r *replica) isLeader() bool { return r.raft.State() == raft.Leader }

// leader returns the id of the group leader as this replica knows it.
func (r *replica) leader() base.NodeID {
	_, id := r.raft.LeaderWithID()
	return base.NodeID(id)
}

func (r *replica) notLeader() error {
	return &base.NotLeaderError{Group: r.id, Leader: r.leader()}
}

// await waits for a raft future within ctx. The future keeps running if ctx
// ends first. A raft future supports one waiter only: never await a future
// that another goroutine also waits on.
func await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueueTimeout bounds how long raft may take to accept an entry.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return 5 * time.Second
}

// apply proposes cmd and waits until it is committed and applied. Errors
// say whether the entry was certainly not applied (ErrNotLeader,
// ErrUnavailable) or may have been (ErrOutcomeUnknown).
func (r *replica) apply(ctx context.Context, cmd []byte) (interface{}, error) {
	return r.submit(ctx, cmd, nil)
}

// applyWrite is apply for a put or delete of key: under load it shares a
// log entry with other writes to other keys.
func (r *replica) applyWrite(ctx context.Context, cmd, key []byte) (interface{}, error) {
	return r.submit(ctx, cmd, key)
}

// applyAsync proposes a put or delete of key and returns once the leader
// has durably appended it, with its index and term; followers may not have
// it yet.
func (r *replica) applyAsync(ctx context.Context, cmd, key []byte) (appended, error) {
	if r.closed.Load() {
		return appended{}, base.ErrShutdown
	}
	if !r.isLeader() {
		return appended{}, r.notLeader()
	}
	at, sent, err := r.prop.proposeAsync(ctx, cmd, key)
	if !sent {
		return at, fmt.Errorf("%w: group %d: not proposed before the deadline", base.ErrUnavailable, r.id)
	}
	if err != nil {
		return at, r.proposalError(err)
	}
	return at, nil
}

func (r *replica) submit(ctx context.Context, cmd, key []byte) (interface{}, error) {
	if r.closed.Load() {
		return nil, base.ErrShutdown
	}
	if !r.isLeader() {
		return nil, r.notLeader()
	}
	if brokenAckBeforeCommit && r.st != nil {
		go r.prop.propose(context.Background(), cmd, key)
		return store.Result{Applied: true}, nil
	}
	resp, sent, err := r.prop.propose(ctx, cmd, key)
	if !sent {
		return nil, fmt.Errorf("%w: group %d: not proposed before the deadline", base.ErrUnavailable, r.id)
	}
	if err != nil {
		return nil, r.proposalError(err)
	}
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// removeState deletes a state file and its unsynced-writes marker.
func removeState(path string) error {
	for _, p := range []string{path, path + ".unsynced"} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// proposalError translates a proposal's error: certainly not applied
// (ErrNotLeader, ErrUnavailable) or maybe applied (ErrOutcomeUnknown).
func (r *replica) proposalError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return r.notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: group %d: raft did not accept the entry in time", base.ErrUnavailable, r.id)
	case errors.Is(err, base.ErrOutcomeUnknown):
		return err
	default:
		// Leadership lost, shutdown or our deadline while waiting: the
		// entry may still commit.
		return fmt.Errorf("%w: group %d: %v", base.ErrOutcomeUnknown, r.id, err)
	}
}
