package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/acl"
	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/verify"
)

// Backend is what the handlers call; *raftnode.Node implements it.
type Backend interface {
	Put(ctx context.Context, key, value []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error)
	Delete(ctx context.Context, key []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error)
	GetAt(ctx context.Context, key []byte, c protocol.Consistency, minIndex uint64) (raftnode.ReadResult, error)
	Wait(ctx context.Context, g base.GroupID, index, term uint64) (protocol.Response, error)
	ListEach(ctx context.Context, o raftnode.ListOptions, emit func(protocol.KV) error) error
	Status() raftnode.Status
	Ring() (raftnode.RingInfo, error)
	Lookup(key []byte) (raftnode.Lookup, error)
	// RingEpoch is the epoch of the ring this node routes by (0 before
	// the cluster layout is known).
	RingEpoch() uint64
	ChangeRing(ctx context.Context, c layout.RingChange) (layout.RingChange, error)
	AbortRingChange(ctx context.Context) error
	PinLeader(ctx context.Context, g base.GroupID, node base.NodeID) error
	Plan(ctx context.Context, c layout.RingChange, withRanges bool) (raftnode.Plan, error)
	Join(ctx context.Context, info layout.NodeInfo) error
	RemoveNode(ctx context.Context, id base.NodeID, o raftnode.RemoveOptions) (raftnode.Removal, error)
	DrainNode(ctx context.Context, id base.NodeID, on bool) error
	Cluster(ctx context.Context) raftnode.ClusterInfo
	Ready() (bool, string)
	ServeBatch(ctx context.Context, b protocol.Batch) protocol.BatchReply
	// ProtocolVersion is the node-to-node protocol version the node
	// speaks (protocol.Version), said on forwarding answers.
	ProtocolVersion() int
	BlockPeers(addrs []string)
	Verify(ctx context.Context, g base.GroupID, o verify.Options) (api.GroupVerification, error)
	VerifyAll(ctx context.Context, o verify.Options) ([]api.GroupVerification, error)
	SnapshotAll(ctx context.Context) ([]raftnode.SnapshotResult, error)
	Backup(ctx context.Context, dir string, w io.Writer) (snapshot.Manifest, error)
	Restore(ctx context.Context, dir string, r io.Reader, o backup.Options) (backup.RestoreReport, error)
	// ACLEnabled reports whether access control is on; Authenticate
	// resolves a token secret ("" for none) to its identity; ACL is the
	// state decisions are made by (nil when off).
	ACLEnabled() bool
	Authenticate(ctx context.Context, secret string, o raftnode.AuthOptions) (raftnode.Identity, error)
	ACL() *layout.ACLState
	ACLBootstrap(ctx context.Context) (acl.Token, string, error)
	ACLCreateToken(ctx context.Context, description string, policies []string, management bool) (acl.Token, string, error)
	ACLDeleteToken(ctx context.Context, accessor string) error
	ACLSetPolicy(ctx context.Context, p acl.Policy, create bool) error
	ACLDeletePolicy(ctx context.Context, name string) error
	// PeerSecret is the cluster's peer secret, for a node about to join a
	// cluster with access control and without peer TLS.
	PeerSecret() ([]byte, error)
	ServeCheckpoint(ctx context.Context, g base.GroupID, minIndex uint64, start func(h snapshot.Header) io.Writer) error
	RestoreCheckpoint(ctx context.Context, g base.GroupID, r io.Reader, f raftnode.RestoreFence) (uint64, error)
	Tree(ctx context.Context, g base.GroupID) (api.GroupTree, error)
}

// Config configures the API.
type Config struct {
	MaxKeyBytes   int
	MaxValueBytes int64
	// Replication is the default write acknowledgement reported by status.
	Replication string
	Logger      *slog.Logger
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof bool
	// FaultHook serves POST /v1/debug/fault, which cuts this node's Raft
	// traffic from chosen peers. For fault-injection runs only.
	FaultHook bool
	// TempDir holds backups and checkpoints while they are assembled or
	// checked; the system's when empty.
	TempDir string
	// Registry receives the API's and the backend's metrics; a new one when
	// nil.
	Registry *prometheus.Registry
	// MaxConcurrentLists bounds the recursive lists this node answers at
	// once: each holds its page of every group in memory. A list beyond
	// it waits up to ListQueueWait, then gets 503 with Retry-After.
	MaxConcurrentLists int
	ListQueueWait      time.Duration
}

// DefaultConfig returns the limits in the contract.
func DefaultConfig() Config {
	return Config{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, Replication: "sync", MaxConcurrentLists: 4, ListQueueWait: 2 * time.Second}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.MaxKeyBytes < 1 || c.MaxValueBytes < 1 {
		return errors.New("httpapi: key and value limits must be positive")
	}
	if c.Replication != "sync" && c.Replication != "async" {
		return errors.New("httpapi: replication must be sync or async")
	}
	if c.MaxConcurrentLists < 1 || c.ListQueueWait < 0 {
		return errors.New("httpapi: concurrent lists must be at least 1 and their queue wait not negative")
	}
	return nil
}

// API serves ringkv's REST API for one node.
type API struct {
	cfg     Config
	b       Backend
	log     *slog.Logger
	router  *mux.Router
	peer    *mux.Router   // the internal endpoints (PeerHandler)
	lists   chan struct{} // a token per list running (MaxConcurrentLists)
	kv      http.Handler  // the key-value routes, which router does not hold
	metrics *metrics
	audit   *audit
}

// New builds the API over b.
func New(b Backend, cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	a := &API{cfg: cfg, b: b, log: cfg.Logger, lists: make(chan struct{}, cfg.MaxConcurrentLists)}
	a.metrics = newMetrics(cfg.Registry, b)
	a.audit = newAudit(cfg.Registry, cfg.Logger.Info)
	a.router = a.routes(a.routeTable())
	a.peer = a.peerRoutes()
	return a, nil
}

// PeerHandler serves the internal endpoints under /v1/internal, which
// other nodes call. Serve it on raftnode.Node.PeerListener (the Raft port),
// never on the client listener: these calls install checkpoints and run
// internal operations, and are as trusted as Raft traffic.
func (a *API) PeerHandler() http.Handler { return a.peer }

// ServeHTTP makes API an http.Handler.
// Key-value requests skip the router (see routes).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.EscapedPath(), kvPrefix) {
		a.setEpoch(w)
		a.kv.ServeHTTP(w, r)
		return
	}
	a.router.ServeHTTP(w, r)
}

// NewServer wraps h in an http.Server with read-header, read, write and idle
// timeouts.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Room for a 100,000-byte token to reach the handler and get a
		// JSON 401, not the server's plain-text 431.
		MaxHeaderBytes: 256 << 10,
	}
}
