package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/placer"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/reshard"
	"github.com/ringkv/ringkv/transport"
)

// Node is one ringkv node. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	log *slog.Logger
	// logStore is the store new groups keep their Raft logs in (the
	// data dir's, see resolveLogStore).
	logStore string
	mux      *transport.Mux
	fwd      *protocol.Forwarder
	// peerLn accepts node-to-node HTTP on the Raft port (PeerListener).
	peerLn raft.StreamLayer

	meta *replica
	// moving is the replica move this node runs as metadata leader.
	placer *placer.Placer

	startMu  sync.Mutex // serialises decisions to open a replica
	starting map[base.GroupID]bool

	mu       sync.RWMutex
	replicas map[base.GroupID]*replica
	hints    map[base.GroupID]base.NodeID // leader hints learnt from peers

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	joined  chan struct{}
	removed atomic.Bool // the cluster removed this node (see removalLoop)
	// olderMetaWarned is when lists last warned of a metadata leader of
	// an earlier release (unix nanoseconds; warnOlderMetaLeader).
	olderMetaWarned atomic.Int64
	// aclCache holds the compiled access control of the current layout.
	aclCache ACLResolver
	// aclMarked: this node's cluster has access control on (its marker
	// file is in the data dir); aclWarned: a flag at odds with it was
	// logged.
	aclMarked atomic.Bool
	aclWarned atomic.Bool
	// secret is the cluster's peer secret when its Raft port requires one
	// (access control on, no peer TLS), nil otherwise; see peersecret.go.
	secret *transport.PeerSecret
	// aclSync is the layout catch-up unknown tokens wait for, if any.
	aclSyncMu sync.Mutex
	aclSync   *aclWait
}

// New starts a node: it opens the Raft port and every local replica, then
// bootstraps a new cluster, rejoins an existing one from local state, or
// joins through cfg.Join, in the background.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", string(cfg.ID)), replicas: map[base.GroupID]*replica{}, starting: map[base.GroupID]bool{},
		hints: map[base.GroupID]base.NodeID{}, fwd: protocol.NewForwarder(), joined: make(chan struct{})}
	n.placer = placer.New(placerCluster{n}, placer.Options{MoveStall: n.cfg.moveStall(), OnReplicaMove: n.cfg.Knobs.OnReplicaMove})
	if n.cfg.OnFatal == nil {
		n.cfg.OnFatal = func(err error) { panic(err) }
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	if err := checkNotRemoved(cfg.DataDir); err != nil {
		return nil, err
	}
	var err error
	if n.logStore, err = resolveLogStore(cfg.DataDir, cfg.LogStore); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, aclMarkerFile)); err == nil {
		n.aclMarked.Store(true)
	}
	if cfg.PeerTLS != nil {
		n.fwd.UsePeerTLS(cfg.PeerTLS)
	}
	restart := hasState(groupDir(cfg.DataDir, base.MetaGroup))
	bootstrap := !restart && len(cfg.Join) == 0
	if n.secret, err = n.openPeerSecret(restart, bootstrap); err != nil {
		return nil, err
	}
	n.mux, err = transport.NewMux(cfg.RaftAddr, cfg.AdvertiseRaft, cfg.PeerTLS, n.secret, n.log)
	if err != nil {
		return nil, err
	}
	if n.cfg.AdvertiseRaft == "" {
		n.cfg.AdvertiseRaft = n.mux.Addr().String()
	}
	if len(cfg.FaultVia) > 0 {
		n.mux.Route(cfg.FaultVia)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.openPeerLayers(); err != nil {
		n.mux.Close()
		return nil, err
	}
	if err := n.openReplicas(restart, bootstrap); err != nil {
		n.Close()
		return nil, err
	}
	n.goLoop(n.initLoop)
	n.goLoop(n.reconcileLoop)
	n.goLoop(reshard.New(moverCluster{n}, reshard.Options{OnTransfer: n.cfg.Knobs.OnTransfer}).Loop)
	n.goLoop(n.placer.Loop)
	n.goLoop(n.removalLoop)
	n.goLoop(n.restoreJanitor)
	if cfg.BalanceInterval > 0 {
		n.goLoop(n.balanceLoop)
	}
	if cfg.VerifyInterval > 0 {
		n.goLoop(n.verifyLoop)
	}
	return n, nil
}

// openPeerLayers opens the Raft port's layers for node-to-node requests:
// forwarding streams, served and dialled, and node-to-node HTTP.
func (n *Node) openPeerLayers() error {
	sl, err := n.mux.Layer(protocol.StreamGroup)
	if err != nil {
		return err
	}
	n.fwd.UseStreams(sl)
	go n.serveStreams(sl)
	if n.peerLn, err = n.mux.Layer(transport.PeerHTTPGroup); err != nil {
		return err
	}
	n.fwd.UsePeerLayer(n.peerLn)
	return nil
}

// openReplicas opens the metadata group's replica, then: on a restart every
// group the data dir holds, in parallel (each replays its own log tail); on
// a bootstrap the configured groups, alone; on a join nothing yet (joinLoop
// asks the cluster).
func (n *Node) openReplicas(restart, bootstrap bool) error {
	var boot []raft.Server
	if bootstrap {
		boot = n.alone()
	}
	var err error
	if n.meta, err = n.openReplica(base.MetaGroup, boot); err != nil {
		return err
	}
	switch {
	case restart:
		n.log.Info("restarting from local state; --join ignored", "data_dir", n.cfg.DataDir)
		ids, err := localGroups(n.cfg.DataDir)
		if err != nil {
			return err
		}
		errs := make(chan error, len(ids))
		for _, id := range ids {
			go func() { errs <- n.startReplica(id, nil) }()
		}
		var firstErr error
		for range ids {
			if err := <-errs; err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return firstErr
		}
		close(n.joined)
	case bootstrap:
		n.log.Info("bootstrapping a new cluster", "groups", n.cfg.Groups)
		for id := 1; id <= n.cfg.Groups; id++ {
			if err := n.startReplica(base.GroupID(id), n.alone()); err != nil {
				return err
			}
		}
		close(n.joined)
	default:
		n.goLoop(n.joinLoop)
	}
	return nil
}

func (n *Node) goLoop(f func(context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

// localGroups lists the data groups that have a directory under dataDir.
func localGroups(dataDir string) ([]base.GroupID, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "groups"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []base.GroupID
	for _, e := range ents {
		v, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || v == 0 || !e.IsDir() {
			continue
		}
		ids = append(ids, base.GroupID(v))
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

// alone is a configuration with this node as the only voter.
func (n *Node) alone() []raft.Server {
	return []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.cfg.advertiseRaft())}}
}

func (n *Node) startReplica(id base.GroupID, boot []raft.Server) error {
	n.startMu.Lock()
	if n.starting[id] || n.replica(id) != nil {
		n.startMu.Unlock()
		return nil
	}
	n.starting[id] = true
	n.startMu.Unlock()

	start := time.Now()
	r, err := n.openReplica(id, boot)

	n.startMu.Lock()
	defer n.startMu.Unlock()
	delete(n.starting, id)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.replicas[id] = r
	n.mu.Unlock()
	n.log.Info("replica started", "group", uint32(id), "bootstrap", len(boot) > 0, "took", time.Since(start).Round(time.Millisecond), "applied_index", r.st.AppliedIndex())
	return nil
}

// Close shuts every replica down and releases the Raft port.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	n.mu.Lock()
	reps := n.replicas
	n.replicas = map[base.GroupID]*replica{}
	n.mu.Unlock()
	// Hand led groups to a follower first, so that clients wait for a
	// transfer rather than an election timeout.
	all := []*replica{n.meta}
	for _, r := range reps {
		all = append(all, r)
	}
	var wg sync.WaitGroup
	for _, r := range all {
		if r == nil || r.raft == nil || !r.isLeader() || len(r.voters()) < 2 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.Timing.Election)
			defer cancel()
			if err := await(ctx, r.raft.LeadershipTransfer()); err != nil {
				n.log.Warn("leadership transfer before shutdown", "group", uint32(r.id), "err", err)
			}
		}()
	}
	wg.Wait()
	for _, r := range reps {
		wg.Add(1)
		go func() { defer wg.Done(); r.shutdown() }()
	}
	wg.Wait()
	if n.meta != nil {
		n.meta.shutdown()
	}
	if n.mux != nil {
		n.mux.Close()
	}
	n.fwd.Close()
	return nil
}

// ID returns the node's id.
func (n *Node) ID() base.NodeID { return n.cfg.ID }

// Mux exposes the Raft port's fault hook (Block) to tests and the chaos
// harness.
func (n *Node) Mux() *transport.Mux { return n.mux }

// PeerListener accepts the node-to-node HTTP calls that arrive on the Raft
// port (the internal endpoints under /v1/internal: forwarded requests,
// checkpoints, restores). The caller serves them; nothing else reaches
// those endpoints. It closes with the node.
func (n *Node) PeerListener() net.Listener { return n.peerLn }

// BlockPeers is the fault hook: it cuts this node's Raft traffic and its
// forwarding streams (which share the Raft port) to and from the given Raft
// addresses (nil heals). Client traffic is unaffected.
func (n *Node) BlockPeers(addrs []string) {
	n.log.Warn("fault hook: raft traffic blocked", "peers", addrs)
	n.mux.Block(addrs)
}

// RoutePeers is the fault hook's other half: this node dials each peer
// Raft address in via at the address it maps to (a link emulating the
// network between the two), nil dials directly. Nothing else changes.
func (n *Node) RoutePeers(via map[string]string) {
	n.log.Warn("fault hook: raft traffic rerouted", "via", via)
	n.mux.Route(via)
}

func (n *Node) fatal(err error) {
	n.log.Error("state machine cannot apply a committed entry; stopping", "err", err)
	n.cfg.OnFatal(err)
}

// Layout returns the replicated cluster layout as this node has applied it.
func (n *Node) Layout() *layout.Layout { return n.meta.meta.Layout() }

func (n *Node) replica(id base.GroupID) *replica {
	if id == base.MetaGroup {
		return n.meta
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.replicas[id]
}

func (n *Node) localReplicas() []*replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*replica, 0, len(n.replicas))
	for _, r := range n.replicas {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (n *Node) self() layout.NodeInfo {
	return layout.NodeInfo{ID: n.cfg.ID, HTTPAddr: n.cfg.HTTPAddr, RaftAddr: n.cfg.AdvertiseRaft, Weight: n.cfg.Weight}
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
// retryBackoff is a retry loop's wait: from first, doubling up to most,
// each wait drawn within ±50% so that nodes retrying together spread out.
func retryBackoff(first, most time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: first, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: most}
	b.Reset()
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// initLoop writes the initial layout once this node leads an uninitialised
// metadata group (a freshly bootstrapped cluster).
func (n *Node) initLoop(ctx context.Context) {
	for {
		changed := n.meta.meta.Changed()
		if n.Layout().Initialized {
			return
		}
		if n.meta.isLeader() {
			groups := len(n.localReplicas())
			if groups == 0 {
				groups = n.cfg.Groups
			}
			cmd := layout.Command{Op: layout.OpInit, Node: ptr(n.self()), Groups: groups, VNodes: n.cfg.VNodes, Replication: n.cfg.Replication, ClusterID: newClusterID(), EnableACL: n.cfg.ACL}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := n.meta.apply(actx, mustJSON(cmd))
			cancel()
			if err != nil {
				n.log.Warn("initialising cluster layout", "err", err)
			}
			continue
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// joinLoop asks the nodes in cfg.Join to add this node until one succeeds.
func (n *Node) joinLoop(ctx context.Context) {
	wait := retryBackoff(100*time.Millisecond, 2*time.Second)
	for attempt := 0; ; attempt++ {
		for _, url := range n.cfg.Join {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := n.learnPeerSecret(rctx, url)
			if err == nil {
				err = joinVia(n.fwd, rctx, url, n.self(), n.cfg.JoinToken)
			}
			cancel()
			if err == nil {
				n.log.Info("joined cluster", "via", url)
				close(n.joined)
				return
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, base.ErrUnauthorized) || errors.Is(err, base.ErrForbidden) {
				n.log.Error("the cluster refuses this node's join: it has access control on, and a node joins with a token allowing operator write (--token or RINGKV_TOKEN); retrying",
					"via", url, "attempt", attempt, "err", err)
			} else {
				n.log.Warn("join attempt failed; retrying", "via", url, "attempt", attempt, "err", err)
			}
		}
		if !sleepCtx(ctx, wait.NextBackOff()) {
			return
		}
	}
}

// reconcileLoop starts the replicas the layout assigns to this node and
// stops those it no longer does.
func (n *Node) reconcileLoop(ctx context.Context) {
	for {
		changed := n.meta.meta.Changed()
		l := n.Layout()
		for _, g := range l.Groups {
			if l.Holds(g, n.cfg.ID) && n.replica(g.ID) == nil {
				if err := n.startReplica(g.ID, n.bootstrapOf(l, g)); err != nil {
					n.log.Error("starting assigned replica", "group", uint32(g.ID), "err", err)
				}
			}
		}
		if l.Initialized {
			n.retireReplicas(l)
			n.dropStrayReplicas(ctx)
			// Learners become voters once caught up, here rather than
			// in the placer, which a long replica move holds.
			if n.meta.isLeader() {
				if err := n.promoteMetaVoters(ctx); err != nil && ctx.Err() == nil {
					n.log.Warn("promoting metadata learners: will retry", "err", err)
				}
			}
			for _, r := range n.localReplicas() {
				if err := n.promoteGroupLearners(ctx, r); err != nil && ctx.Err() == nil {
					n.log.Warn("promoting learners: will retry", "group", uint32(r.id), "err", err)
				}
			}
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// bootstrapOf returns the voters a new group created by a ring change
// starts with, when this node is one of them; nil otherwise (the replica
// joins or already has state).
func (n *Node) bootstrapOf(l *layout.Layout, g layout.GroupInfo) []raft.Server {
	var boot []raft.Server
	mine := false
	for _, id := range g.Bootstrap {
		info, ok := l.Node(id)
		if !ok {
			return nil
		}
		mine = mine || id == n.cfg.ID
		boot = append(boot, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(info.RaftAddr)})
	}
	if !mine {
		return nil
	}
	return boot
}

// retireReplicas shuts down local replicas of groups a ring change
// retired and moves their files aside. Only groups the layout lists as
// retired: a layout still catching up may not know a new group yet.
func (n *Node) retireReplicas(l *layout.Layout) {
	n.mu.RLock()
	var gone []*replica
	for _, id := range l.Retired {
		if r := n.replicas[id]; r != nil {
			gone = append(gone, r)
		}
	}
	n.mu.RUnlock()
	for _, r := range gone {
		n.mu.Lock()
		delete(n.replicas, r.id)
		n.mu.Unlock()
		r.shutdown()
		dst := filepath.Join(n.cfg.DataDir, "retired", fmt.Sprintf("%d-%d", r.id, time.Now().UnixNano()))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.Rename(r.dir, dst)
			n.log.Info("replica of a retired group shut down", "group", uint32(r.id), "moved_to", dst, "err", err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
