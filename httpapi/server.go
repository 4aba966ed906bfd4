package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
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
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/verify"
)

// Backend is what the handlers call; *raftnode.Node implements it. It is
// made of one interface per concern, so that each handler file shows what
// of the node it uses.
type Backend interface {
	KV
	Watch
	RingAdmin
	Membership
	Integrity
	AccessControl
	Peering
}

// KV reads and writes keys.
type KV interface {
	// Put writes key=value, acknowledged as o says (a majority, or the
	// leader's append), and names the node that served it.
	Put(ctx context.Context, key, value []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error)
	// Delete removes key, as Put writes it.
	Delete(ctx context.Context, key []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error)
	// GetAt reads key at consistency c from a replica that has applied at
	// least minIndex of its group (0: any).
	GetAt(ctx context.Context, key []byte, c protocol.Consistency, minIndex uint64) (raftnode.ReadResult, error)
	// Wait returns once group g has committed index (written in term), or
	// says the entry was lost.
	Wait(ctx context.Context, g base.GroupID, index, term uint64) (protocol.Response, error)
	// ListEach calls emit with every key o selects, in key order, across
	// groups, until emit fails.
	ListEach(ctx context.Context, o raftnode.ListOptions, emit func(protocol.KV) error) error
}

// Watch reads the groups' change histories.
type Watch interface {
	// Changes reads a page of group g's history on its leader, waiting up
	// to req.Wait for a change (raftnode.Node.Changes).
	Changes(ctx context.Context, g base.GroupID, req raftnode.ChangesRequest) (store.ChangesPage, error)
	// DataGroups lists the data groups of the layout, and a channel
	// closed when the layout changes.
	DataGroups() ([]base.GroupID, <-chan struct{})
}

// RingAdmin reads and changes the ring and the groups' leaders.
type RingAdmin interface {
	// Ring describes the ring as this node has it.
	Ring() (api.RingInfo, error)
	// Lookup names the group, leader and replicas owning key.
	Lookup(key []byte) (api.Lookup, error)
	// RingEpoch is the epoch of the ring this node routes by (0 before
	// the cluster layout is known).
	RingEpoch() uint64
	// ChangeRing starts a ring change and returns it as recorded (an
	// added group's id filled in).
	ChangeRing(ctx context.Context, c layout.RingChange) (layout.RingChange, error)
	// AbortRingChange undoes the ring change in motion.
	AbortRingChange(ctx context.Context) error
	// PinLeader makes node the preferred leader of group g ("" unpins).
	PinLeader(ctx context.Context, g base.GroupID, node base.NodeID) error
	// Plan previews a ring change: what would move where.
	Plan(ctx context.Context, c layout.RingChange, withRanges bool) (api.Plan, error)
}

// Membership admits, drains and removes nodes, and reports on them.
type Membership interface {
	// ID is this node's id.
	ID() base.NodeID
	// Status is this node's view of itself and its replicas.
	Status() raftnode.Status
	// Join admits the node info describes.
	Join(ctx context.Context, info layout.NodeInfo) error
	// RemoveNode removes node id, at once or once its replicas moved.
	RemoveNode(ctx context.Context, id base.NodeID, o raftnode.RemoveOptions) (raftnode.Removal, error)
	// DrainNode moves node id's replicas off it (on) or lets it take
	// replicas again.
	DrainNode(ctx context.Context, id base.NodeID, on bool) error
	// Cluster describes every member, its replicas and leaderships, and
	// the replica move in motion.
	Cluster(ctx context.Context) api.ClusterInfo
	// Ready says whether every local group has a known leader, and if
	// not, why.
	Ready() (bool, string)
}

// Integrity verifies, snapshots, backs up and restores.
type Integrity interface {
	// Verify compares group g's replicas at one log index (package
	// verify); VerifyAll every group's.
	Verify(ctx context.Context, g base.GroupID, o verify.Options) (api.GroupVerification, error)
	VerifyAll(ctx context.Context, o verify.Options) ([]api.GroupVerification, error)
	// Tree is group g's Merkle tree at a verification index.
	Tree(ctx context.Context, g base.GroupID) (api.GroupTree, error)
	// SnapshotAll takes a Raft snapshot of every local replica.
	SnapshotAll(ctx context.Context) ([]raftnode.SnapshotResult, error)
	// Backup writes an archive of every group to w; Restore loads one
	// (package backup). Temporary files go under dir.
	Backup(ctx context.Context, dir string, w io.Writer) (snapshot.Manifest, error)
	Restore(ctx context.Context, dir string, r io.Reader, o backup.Options) (backup.RestoreReport, error)
}

// AccessControl resolves tokens and changes policies and tokens.
type AccessControl interface {
	// ACLEnabled reports whether access control is on; Authenticate
	// resolves a token secret ("" for none) to its identity; ACL is the
	// state decisions are made by (nil when off).
	ACLEnabled() bool
	Authenticate(ctx context.Context, secret string, o raftnode.AuthOptions) (raftnode.Identity, error)
	ACL() *layout.ACLState
	// ACLBootstrap makes the first management token, once.
	ACLBootstrap(ctx context.Context) (acl.Token, string, error)
	// ACLCreateToken and ACLDeleteToken add and remove a token; a new
	// token's secret is returned once.
	ACLCreateToken(ctx context.Context, description string, policies []string, management bool) (acl.Token, string, error)
	ACLDeleteToken(ctx context.Context, accessor string) error
	// ACLSetPolicy creates (create) or replaces a policy; ACLDeletePolicy
	// removes one no token uses.
	ACLSetPolicy(ctx context.Context, p acl.Policy, create bool) error
	ACLDeletePolicy(ctx context.Context, name string) error
	// PeerSecret is the cluster's peer secret, for a node about to join a
	// cluster with access control and without peer TLS.
	PeerSecret() ([]byte, error)
}

// Peering serves what other nodes ask on the Raft port, and the fault hook.
type Peering interface {
	// ServeBatch runs a batch of requests another node forwarded.
	ServeBatch(ctx context.Context, b protocol.Batch) protocol.BatchReply
	// ProtocolVersion is the node-to-node protocol version the node
	// speaks (protocol.Version), said on forwarding answers.
	ProtocolVersion() int
	// BlockPeers cuts this node's Raft traffic from the nodes at addrs
	// (fault injection).
	BlockPeers(addrs []string)
	// RoutePeers makes this node dial the peers at via's keys at its
	// values (emulated links); nil dials directly.
	RoutePeers(via map[string]string)
	// ServeCheckpoint writes a checkpoint of group g, at least at
	// minIndex, to the writer start returns once it is open.
	ServeCheckpoint(ctx context.Context, g base.GroupID, minIndex uint64, start func(h snapshot.Header) io.Writer) error
	// RestoreCheckpoint replaces group g's state with the checkpoint in r,
	// for the restore holding fence; it returns the index the group
	// restarts from.
	RestoreCheckpoint(ctx context.Context, g base.GroupID, r io.Reader, f raftnode.RestoreFence) (uint64, error)
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
	// WatchHeartbeat is how often a change stream says it is alive (an
	// SSE comment) and, with access control on, checks its token again.
	WatchHeartbeat time.Duration
	// MaxWatchStreams bounds the change streams open on this node (each
	// costs it some 36 KB); one more is answered 503.
	MaxWatchStreams int
	// CORSOrigins are the origins whose pages may call the API from a
	// browser (ValidateOrigins); none by default.
	CORSOrigins []string
}

// DefaultConfig returns the limits in the contract.
func DefaultConfig() Config {
	return Config{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, Replication: "sync", MaxConcurrentLists: 4, ListQueueWait: 2 * time.Second,
		WatchHeartbeat: 5 * time.Second, MaxWatchStreams: 10000}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.MaxKeyBytes < 1 || c.MaxValueBytes < 1 {
		return errors.New("httpapi: key and value limits must be positive")
	}
	if c.Replication != "sync" && c.Replication != "async" {
		return errors.New("httpapi: replication must be sync or async")
	}
	if c.WatchHeartbeat <= 0 || c.MaxWatchStreams < 1 {
		return errors.New("httpapi: the watch heartbeat and the most watch streams must be positive")
	}
	if c.MaxConcurrentLists < 1 || c.ListQueueWait < 0 {
		return errors.New("httpapi: concurrent lists must be at least 1 and their queue wait not negative")
	}
	return ValidateOrigins(c.CORSOrigins)
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
	entry   http.Handler  // serve, behind CORS when origins are allowed
	metrics *metrics
	audit   *audit
	feeds   *feeds // the groups' histories, shared by watches
	// watching counts the change streams open (MaxWatchStreams).
	watching atomic.Int64
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
	a.feeds = newFeeds(b)
	a.audit = newAudit(cfg.Registry, cfg.Logger.Info)
	a.router = a.routes(a.routeTable())
	a.peer = a.peerRoutes()
	a.entry = withCORS(cfg.CORSOrigins, http.HandlerFunc(a.serve))
	return a, nil
}

// PeerHandler serves the internal endpoints under /v1/internal, which
// other nodes call. Serve it on raftnode.Node.PeerListener (the Raft port),
// never on the client listener: these calls install checkpoints and run
// internal operations, and are as trusted as Raft traffic.
func (a *API) PeerHandler() http.Handler { return a.peer }

// ServeHTTP makes API an http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.entry.ServeHTTP(w, r) }

// serve routes a request. Key-value requests skip the router (see routes).
func (a *API) serve(w http.ResponseWriter, r *http.Request) {
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
