package main

import (
	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/httpapi"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

type options struct {
	node          raftnode.Config
	api           httpapi.Config
	httpAddr      string
	advertiseHTTP string
	join          string
	corsOrigins   string
	logLevel      string
	logFormat     string
	// gcPercent is Go's GC target (--gc-percent); gcGiven says the flag
	// or RINGKV_GC_PERCENT was given.
	gcPercent int
	gcGiven   bool
	// memLimit is --memory-limit as given ("" for the default).
	memLimit string
	// tlsCert, tlsKey and tlsClientCA serve the client port over TLS.
	tlsCert, tlsKey, tlsClientCA string
	// peerCert, peerKey and peerCA make the Raft port mutual TLS.
	peerCert, peerKey, peerCA string
	// tokenFile holds the join token (--token-file).
	tokenFile string
}

// defaultGCPercent lets the heap grow to five times what is live before
// the garbage collector runs, instead of Go's twice: at 64 and 256
// writing clients it did 1.00 to 1.32x the writes/s of Go's default, for
// about 180 instead of 105 MB resident per node (README, "Garbage
// collection").
const defaultGCPercent = 400

// gcTarget is the GC percentage to set, if any: the flag's when given,
// none when GOGC is set in the environment (Go applies it), else the
// default.
func (o options) gcTarget(getenv func(string) string) (int, bool) {
	switch {
	case o.gcGiven:
		return o.gcPercent, true
	case getenv("GOGC") != "":
		return 0, false
	}
	return defaultGCPercent, true
}

// parseFlags reads flags, falling back to RINGKV_<NAME> environment
// variables for flags not given on the command line.
func parseFlags(args []string, getenv func(string) string) (options, error) {
	o := options{node: raftnode.DefaultConfig(), api: httpapi.DefaultConfig()}
	fs := flag.NewFlagSet("ringkvd", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	id := defineFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := fromEnv(fs, set, getenv); err != nil {
		return o, err
	}
	o.gcGiven = set["gc-percent"] || getenv("RINGKV_GC_PERCENT") != ""
	if _, _, err := o.memoryLimit(getenv, 0); err != nil {
		return o, err
	}
	if o.gcPercent < 1 {
		return o, fmt.Errorf("--gc-percent %d: want 1 or more", o.gcPercent)
	}
	if o.tokenFile != "" {
		if o.node.JoinToken != "" {
			return o, errors.New("--token and --token-file: give one")
		}
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return o, fmt.Errorf("--token-file: %w", err)
		}
		if o.node.JoinToken = strings.TrimSpace(string(b)); o.node.JoinToken == "" {
			return o, fmt.Errorf("--token-file %s is empty", o.tokenFile)
		}
	}
	if len(o.node.FaultVia) > 0 && !o.api.FaultHook {
		return o, errors.New("--fault-via is for fault-injection runs: it needs --fault-hook")
	}
	o.node.ID = base.NodeID(*id)
	o.node.HTTPAddr = o.httpAddr
	if o.advertiseHTTP != "" {
		o.node.HTTPAddr = o.advertiseHTTP
	}
	o.node.Join = append(o.node.Join, splitList(o.join)...)
	o.api.CORSOrigins = append(o.api.CORSOrigins, splitList(o.corsOrigins)...)
	if err := o.api.Validate(); err != nil {
		return o, err
	}
	if o.node.Replication < 1 {
		return o, fmt.Errorf("--replicas %d: want 1 to %d", o.node.Replication, layout.MaxReplication)
	}
	if !(o.node.Weight > 0) {
		return o, fmt.Errorf("--weight %v: want a number above 0", o.node.Weight)
	}
	return o, o.node.Validate()
}

// defineFlags declares ringkvd's flags on fs, into o; it returns --id's.
func defineFlags(fs *flag.FlagSet, o *options) *string {
	id := fs.String("id", "node1", "node id, unique in the cluster")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7070", "client REST API listen address")
	fs.StringVar(&o.node.RaftAddr, "raft-addr", "127.0.0.1:7071", "listen address for all Raft traffic of this node")
	fs.StringVar(&o.advertiseHTTP, "advertise-http", "", "HTTP address other nodes dial (default: --http-addr)")
	fs.StringVar(&o.node.AdvertiseRaft, "advertise-raft", "", "Raft address other nodes dial (default: --raft-addr)")
	fs.StringVar(&o.node.DataDir, "data-dir", "./data", "directory for everything this node persists")
	fs.StringVar(&o.join, "join", "", "comma-separated HTTP URLs of existing nodes; ignored when the data dir holds state")
	fs.IntVar(&o.node.Groups, "groups", 3, "number of data Raft groups created at bootstrap")
	fs.IntVar(&o.node.Replication, "replicas", layout.DefaultReplication, "replicas per group, set when the cluster is bootstrapped (placed on that many of the nodes)")
	fs.Float64Var(&o.node.Weight, "weight", 1, "this node's capacity relative to others: it receives replicas and leaderships in proportion")
	fs.StringVar(&o.api.Replication, "replication", "sync", "default write acknowledgement: sync (after a majority commits) or async (after the leader's own durable append)")
	fs.IntVar(&o.api.MaxKeyBytes, "max-key-bytes", 1024, "largest key accepted, in bytes")
	fs.Int64Var(&o.api.MaxValueBytes, "max-value-bytes", 1<<20, "largest value accepted, in bytes")
	fs.StringVar(&o.corsOrigins, "cors-origins", "", "comma-separated origins whose pages may call the API from a browser (https://app.example.com, https://*.example.com, or * for any); none by default")
	fs.IntVar(&o.api.MaxWatchStreams, "max-watch-streams", 10000, "change streams (GET /v1/watch/) this node serves at once, each some 36 KB of memory; one more is answered 503")
	fs.IntVar(&o.api.MaxConcurrentLists, "max-concurrent-lists", 4, "recursive lists answered at once; more wait up to 2s, then get 503 with Retry-After")
	fs.Uint64Var(&o.node.SnapshotThreshold, "snapshot-threshold", o.node.SnapshotThreshold, "log entries between snapshots of a group")
	fs.DurationVar(&o.node.SnapshotInterval, "snapshot-interval", o.node.SnapshotInterval, "how often each group checks whether to snapshot")
	fs.StringVar(&o.node.LogStore, "log-store", "", "where groups keep their Raft logs: wal (hashicorp/raft-wal, one fsync per append) or boltdb (hashicorp/raft-boltdb); default: the data dir's, wal for a new one")
	fs.Uint64Var(&o.node.TrailingLogs, "trailing-logs", o.node.TrailingLogs, "log entries kept after a snapshot for slow followers (at most half the group's live data in bytes, at least 1 MiB)")
	fs.IntVar(&o.node.WatchHistory, "watch-history", store.DefaultHistoryEntries, "changes each group keeps for watches and blocking queries; a watch from further back is answered 410 compacted")
	fs.Int64Var(&o.node.WatchHistoryBytes, "watch-history-bytes", 0, "most bytes (keys and values) of the changes each group keeps, whatever --watch-history says (0: a quarter of the group's live data, at least 1 MiB and at most 64 MiB)")
	fs.DurationVar(&o.node.Timing.Heartbeat, "heartbeat-timeout", o.node.Timing.Heartbeat, "Raft heartbeat timeout")
	fs.DurationVar(&o.node.Timing.Election, "election-timeout", o.node.Timing.Election, "Raft election timeout")
	fs.DurationVar(&o.node.Timing.LeaderLease, "leader-lease-timeout", o.node.Timing.LeaderLease, "Raft leader lease timeout (must not exceed the heartbeat timeout)")
	fs.IntVar(&o.node.ProposalWaves, "proposal-waves", o.node.ProposalWaves, "batches of writes a group leader keeps in flight; more writes wait and go together")
	fs.DurationVar(&o.node.ProposalLinger, "proposal-linger", o.node.ProposalLinger, "after a batch of 4 or more writes, how long a group leader at most lets the next batch gather (it sends once as many writes as the last batch carried are queued, or after three of its recent batches' commit times); 0: send at once")
	fs.DurationVar(&o.node.BalanceInterval, "balance-interval", o.node.BalanceInterval, "how often leaders rebalance across nodes (0: never)")
	fs.DurationVar(&o.node.MoveStall, "move-stall", raftnode.DefaultMoveStall, "how long a replica move waits for a destination node that does not answer before it is undone")
	fs.DurationVar(&o.node.VerifyInterval, "verify-interval", 0, "how often each group's leader verifies its replicas and repairs a divergent one (0: only on request)")
	fs.DurationVar(&o.node.ApplyCommitDelay, "apply-commit-delay", o.node.ApplyCommitDelay, "how long applied writes may wait for a state-file commit that covers several (lists and snapshots commit at once); 0 commits each apply")
	fs.IntVar(&o.node.MerkleDepth, "merkle-depth", snapshot.DefaultTreeDepth, "depth of each group's Merkle tree (2^depth key-hash ranges), the same on every node")
	fs.BoolVar(&o.api.Pprof, "pprof", false, "serve Go's profiler under /debug/pprof/")
	fs.BoolVar(&o.api.FaultHook, "fault-hook", false, "serve POST /v1/debug/fault to cut Raft traffic from chosen peers (fault-injection runs only)")
	fs.Func("fault-via", "with --fault-hook: PEER=ADDR,... dials the peer Raft address PEER at ADDR (emulated links between pairs of nodes; fault-injection and benchmark runs only)", func(v string) error {
		o.node.FaultVia = map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			peer, addr, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || peer == "" || addr == "" {
				return fmt.Errorf("%q: want PEER=ADDR", kv)
			}
			o.node.FaultVia[peer] = addr
		}
		return nil
	})
	fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "Go garbage collector target: the heap grows by this percentage of what is live before a collection (GOGC in the environment applies when this flag is not given)")
	fs.StringVar(&o.memLimit, "memory-limit", "", "Go's soft memory limit, such as 2GiB, or off (default: a quarter of the memory available, at most 2GiB; GOMEMLIMIT in the environment applies when this flag is not given)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for the client port: serve HTTPS only (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM CA bundle: require client certificates signed by it on the client port")
	fs.StringVar(&o.peerCert, "peer-cert", "", "PEM node certificate for the Raft port: every connection between nodes is mutual TLS (with --peer-key and --peer-ca; every node of the cluster, or none)")
	fs.StringVar(&o.peerKey, "peer-key", "", "PEM key of --peer-cert")
	fs.StringVar(&o.peerCA, "peer-ca", "", "PEM CA bundle that peers' node certificates must be signed by")
	fs.BoolVar(&o.node.ACL, "acl", false, "access control: requests need tokens whose policies allow them (set when the cluster is bootstrapped; every node of the cluster, or none); then POST /v1/acl/bootstrap once for the first management token")
	fs.StringVar(&o.node.JoinToken, "token", "", "token this node joins a cluster with access control with (it needs operator write)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding --token (kept out of the process list), as `ringkv acl bootstrap --save FILE` writes it")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return id
}

// fromEnv sets each flag not given on the command line from RINGKV_<NAME>
// (the flag's name in upper case, dashes as underscores), when set.
func fromEnv(fs *flag.FlagSet, set map[string]bool, getenv func(string) string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "RINGKV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %v", env, v, err)
			}
		}
	})
	return envErr
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %v", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// run starts a node and serves until ctx ends, then shuts down in order:
// stop accepting requests, drain them, stop the Raft groups.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	o, err := parseFlags(args, os.Getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(logOut, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if err := o.setMemory(log); err != nil {
		return err
	}
	// Listen first, so a busy port fails before any state is created.
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	if o.advertiseHTTP == "" {
		o.node.HTTPAddr = ln.Addr().String()
	}
	o.node.Logger = log
	o.node.OnFatal = func(err error) {
		log.Error("fatal: stopping the node rather than let its state diverge", "err", err)
		os.Exit(2)
	}
	removed := make(chan base.NodeID, 1)
	o.node.OnRemoved = func(peer base.NodeID) { removed <- peer }
	stopTLS := make(chan struct{})
	defer close(stopTLS)
	if o.node.PeerTLS, err = peerTLS(o, log, stopTLS); err != nil {
		ln.Close()
		return err
	}
	if o.node.ACL && o.node.PeerTLS == nil {
		log.Warn("access control is on without peer TLS: nodes prove the cluster's peer secret (data dir file peer-secret) to each other's Raft port, but what they send travels in the clear; on a network others can listen to, run every node with --peer-cert, --peer-key and --peer-ca")
	}
	node, err := raftnode.New(o.node)
	if err != nil {
		ln.Close()
		return err
	}
	api, err := o.newAPI(node, log)
	if err != nil {
		ln.Close()
		node.Close()
		return err
	}
	if ln, err = serveTLS(ln, o, log, stopTLS); err != nil {
		ln.Close()
		node.Close()
		return err
	}
	srv := httpapi.NewServer(o.httpAddr, api)
	// net/http's own errors (a refused TLS handshake, a panic it
	// recovered) go to the node's log too.
	srv.ErrorLog = slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	// Node-to-node calls arrive on the Raft port; the listener closes with
	// the node.
	peerSrv := httpapi.NewServer("", api.PeerHandler())
	go peerSrv.Serve(node.PeerListener())
	log.Info("ringkvd serving", "id", o.node.ID, "http", ln.Addr().String(), "raft", node.Mux().Addr().String(), "data_dir", o.node.DataDir)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case peer := <-removed:
		log.Warn("stopping: the cluster removed this node", "learned_from", peer)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", serr)
	}
	node.Close()
	peerSrv.Close()
	log.Info("ringkvd stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// setMemory applies the garbage collector's target and the soft memory
// limit, and logs what holds.
func (o options) setMemory(log *slog.Logger) error {
	if p, ok := o.gcTarget(os.Getenv); ok {
		debug.SetGCPercent(p)
	}
	limit, ok, err := o.memoryLimit(os.Getenv, availableMemory())
	if err != nil {
		return err
	}
	if ok {
		debug.SetMemoryLimit(limit)
	}
	gc := debug.SetGCPercent(-1) // reads it, and puts it back
	debug.SetGCPercent(gc)
	log.Info("garbage collector", "gc_percent", gc, "memory_limit", debug.SetMemoryLimit(-1))
	return nil
}

// newAPI builds the HTTP API over node: its temporary directory (emptied
// of what a crash mid-backup left) and its metrics registry.
func (o options) newAPI(node *raftnode.Node, log *slog.Logger) (*httpapi.API, error) {
	o.api.Logger = log
	o.api.TempDir = filepath.Join(o.node.DataDir, "tmp")
	_ = os.RemoveAll(o.api.TempDir)
	if err := os.MkdirAll(o.api.TempDir, 0o700); err != nil {
		return nil, err
	}
	o.api.Registry = prometheus.NewRegistry()
	if err := exportRaftMetrics(o.api.Registry); err != nil {
		log.Warn("raft metrics not exported", "err", err)
	}
	return httpapi.New(node, o.api)
}

// exportRaftMetrics routes hashicorp/raft's own measurements (commit time,
// log store latency, FSM apply time...) to the Prometheus registry, as
// ringkv_raft_* summaries. They cover every group of the node together.
func exportRaftMetrics(reg prometheus.Registerer) error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: 5 * time.Minute, Name: "ringkv_raft_sink"})
	if err != nil {
		return err
	}
	cfg := gometrics.DefaultConfig("ringkv")
	cfg.EnableHostname = false
	cfg.EnableRuntimeMetrics = false
	// Raft samples these once per entry or per RPC: on a busy node they
	// cost more CPU than they tell. Commit time, log store latency (fsync),
	// elections, snapshots and lease state stay.
	for _, p := range []string{
		"raft.net.", "raft.fsm.enqueue", "raft.fsm.apply", "raft.rpc.appendEntries.processLogs",
		"raft.replication.appendEntries", "raft.boltdb.getLog", "raft.boltdb.logSize",
		"raft.boltdb.logBatchSize", "raft.boltdb.logsPerBatch", "raft.boltdb.writeCapacity",
		"raft.leader.dispatchNumLogs", "raft.commitNumLogs",
	} {
		cfg.BlockedPrefixes = append(cfg.BlockedPrefixes, cfg.ServiceName+"."+p) // keys carry the service name
	}
	_, err = gometrics.NewGlobal(cfg, sink)
	return err
}

// splitList is a comma-separated flag's entries, blanks left out.
func splitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
