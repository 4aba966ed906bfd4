package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/backup"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/raftnode"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
	"github.com/ringkv/ringkv/verify"
)

// fakeBackend is an in-memory Backend. err, when set, is returned by every
// data call.
type fakeBackend struct {
	mu      sync.Mutex
	data    map[string]protocol.KV
	index   uint64
	err     error
	joins   []layout.NodeInfo
	blocked []string
	via     map[string]string
	plans   []layout.RingChange
	changes []layout.RingChange
	ringErr error
	pins    map[base.GroupID]base.NodeID
	// listing, when set, receives a token as each List starts, and
	// listGate holds it until closed.
	listing  chan struct{}
	listGate chan struct{}
	// listFailAt, when set, fails a list after that many keys.
	listFailAt int
	// touched counts calls of the backend by handlers (not those access
	// control makes before a handler runs).
	touched atomic.Int64
	// acl, when set, is the access control state; aclResolver decides by it.
	acl         *layout.ACLState
	aclResolver raftnode.ACLResolver
	// aclPending: access control is on and its state not known yet (a
	// node with --acl before its layout is).
	aclPending bool
	// hist is the change history of group 1, whose oldest kept change is
	// histFirst (see watch_fake_test.go).
	hist      []store.Change
	histFirst uint64
	histWake  chan struct{}
	// waiting counts the reads of the history waiting for a change, and
	// maxWaiting the most there were at once.
	waiting, maxWaiting atomic.Int64
}

func (f *fakeBackend) touch() { f.touched.Add(1) }

func newFake() *fakeBackend { return &fakeBackend{data: map[string]protocol.KV{}} }

func (f *fakeBackend) Put(_ context.Context, key, value []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return protocol.WriteResult{}, "fake", f.err
	}
	cur := f.data[string(key)]
	if o.HasCAS && o.CAS != cur.ModifyIndex {
		return protocol.WriteResult{}, "fake", &base.CASFailedError{Current: cur.ModifyIndex}
	}
	f.index++
	f.data[string(key)] = protocol.KV{Key: key, Value: value, ModifyIndex: f.index, Group: 1}
	f.record(store.Change{Key: key, Value: value, Index: f.index, RaftIndex: f.index})
	return protocol.WriteResult{Key: key, Index: f.index, Group: 1, RaftIndex: f.index, Async: o.Async, RaftTerm: 2}, "fake", nil
}

func (f *fakeBackend) Delete(_ context.Context, key []byte, o raftnode.WriteOptions) (protocol.WriteResult, base.NodeID, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.data[string(key)]; !ok {
		return protocol.WriteResult{}, "fake", base.ErrNotFound
	}
	delete(f.data, string(key))
	f.index++
	f.record(store.Change{Delete: true, Key: key, Index: f.index, RaftIndex: f.index})
	return protocol.WriteResult{Key: key, Group: 1, RaftIndex: f.index}, "fake", nil
}

func (f *fakeBackend) GetAt(_ context.Context, key []byte, c protocol.Consistency, minIndex uint64) (raftnode.ReadResult, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return raftnode.ReadResult{}, f.err
	}
	if minIndex > f.index {
		return raftnode.ReadResult{}, base.ErrTimeout
	}
	kv, ok := f.data[string(key)]
	if !ok {
		return raftnode.ReadResult{KV: protocol.KV{Group: 1}}, base.ErrNotFound
	}
	return raftnode.ReadResult{KV: kv, RaftIndex: f.index, ServedBy: "fake"}, nil
}

func (f *fakeBackend) ListEach(ctx context.Context, o raftnode.ListOptions, emit func(protocol.KV) error) error {
	f.touch()
	kvs, err := f.list(ctx, o)
	for i, kv := range kvs {
		if f.listFailAt > 0 && i == f.listFailAt {
			return fmt.Errorf("%w: group 2 lost its leader", base.ErrNoLeader)
		}
		if err := emit(kv); err != nil {
			return err
		}
	}
	return err
}

func (f *fakeBackend) list(_ context.Context, o raftnode.ListOptions) ([]protocol.KV, error) {
	if f.listGate != nil {
		f.listing <- struct{}{}
		<-f.listGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []protocol.KV
	for k, kv := range f.data {
		if strings.HasPrefix(k, string(o.Prefix)) && (o.After == nil || k > string(o.After)) {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Key) < string(out[j].Key) })
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[:o.Limit]
	}
	return out, nil
}

func (f *fakeBackend) ID() base.NodeID { return "fake" }

func (f *fakeBackend) Status() raftnode.Status {
	f.touch()
	return raftnode.Status{Node: "fake"}
}
func (f *fakeBackend) Ring() (api.RingInfo, error) {
	f.touch()
	return api.RingInfo{Epoch: 3, VNodesPerWeight: 2, Groups: []api.RingGroup{{ID: 1, Weight: 1, VNodes: 2, Share: 1, Tokens: []uint64{7, 1 << 63}}}}, nil
}
func (f *fakeBackend) Ready() (bool, string) {
	f.touch()
	return f.err == nil, "fake not ready"
}
func (f *fakeBackend) RemoveNode(_ context.Context, id base.NodeID, _ raftnode.RemoveOptions) (raftnode.Removal, error) {
	f.touch()
	if id == "busy" {
		return raftnode.Removal{Node: id, Draining: true, Replicas: 4}, nil
	}
	return raftnode.Removal{}, base.ErrNotFound
}
func (f *fakeBackend) DrainNode(_ context.Context, id base.NodeID, on bool) error {
	f.touch()
	if id != "busy" {
		return base.ErrNotFound
	}
	return nil
}
func (f *fakeBackend) Cluster(context.Context) api.ClusterInfo {
	f.touch()
	return api.ClusterInfo{Replication: 3}
}
func (f *fakeBackend) Lookup(key []byte) (api.Lookup, error) {
	f.touch()
	return api.Lookup{Key: string(key), Group: 1}, nil
}
func (f *fakeBackend) RingEpoch() uint64 { return 7 }
func (f *fakeBackend) PinLeader(_ context.Context, g base.GroupID, node base.NodeID) error {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pins == nil {
		f.pins = map[base.GroupID]base.NodeID{}
	}
	f.pins[g] = node
	return nil
}
func (f *fakeBackend) AbortRingChange(context.Context) error {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ringErr != nil {
		return f.ringErr
	}
	f.changes = append(f.changes, layout.RingChange{})
	return nil
}
func (f *fakeBackend) ChangeRing(_ context.Context, c layout.RingChange) (layout.RingChange, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ringErr != nil {
		return c, f.ringErr
	}
	if c.Add != nil && c.Add.Group == 0 {
		add := *c.Add
		add.Group = 9
		c.Add = &add
	}
	f.changes = append(f.changes, c)
	return c, nil
}
func (f *fakeBackend) Plan(_ context.Context, c layout.RingChange, withRanges bool) (api.Plan, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plans = append(f.plans, c)
	return api.Plan{Change: c.String()}, nil
}
func (f *fakeBackend) Join(_ context.Context, info layout.NodeInfo) error {
	f.touch()
	f.joins = append(f.joins, info)
	return nil
}
func (f *fakeBackend) Verify(_ context.Context, g base.GroupID, _ verify.Options) (api.GroupVerification, error) {
	f.touch()
	if g > 3 {
		return api.GroupVerification{}, base.ErrNotFound
	}
	return api.GroupVerification{Group: g, Agree: g != 2}, nil
}

func (f *fakeBackend) VerifyAll(ctx context.Context, o verify.Options) ([]api.GroupVerification, error) {
	f.touch()
	var out []api.GroupVerification
	for g := base.GroupID(1); g <= 3; g++ {
		v, _ := f.Verify(ctx, g, o)
		out = append(out, v)
	}
	return out, nil
}

func (f *fakeBackend) SnapshotAll(context.Context) ([]raftnode.SnapshotResult, error) {
	f.touch()
	return []raftnode.SnapshotResult{{Group: 1, Taken: true, Index: 9}}, nil
}

// Wait: everything the fake wrote is committed; index 99 was lost.
func (f *fakeBackend) Wait(_ context.Context, g base.GroupID, index, term uint64) (protocol.Response, error) {
	f.touch()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case index == 99:
		return protocol.Response{}, base.ErrLost
	case index > f.index:
		return protocol.Response{}, base.ErrTimeout
	}
	return protocol.Response{ServedBy: "fake"}, nil
}

func (f *fakeBackend) Backup(context.Context, string, io.Writer) (snapshot.Manifest, error) {
	f.touch()
	return snapshot.Manifest{}, base.ErrUnavailable
}

// Restore checks the archive as the real one does before changing anything.
func (f *fakeBackend) Restore(_ context.Context, _ string, r io.Reader, _ backup.Options) (backup.RestoreReport, error) {
	f.touch()
	if _, err := snapshot.NewArchiveReader(r); err != nil {
		return backup.RestoreReport{}, fmt.Errorf("%w: %v", base.ErrBadRequest, err)
	}
	return backup.RestoreReport{Mode: "checkpoint", Identical: true}, nil
}

func (f *fakeBackend) ServeCheckpoint(context.Context, base.GroupID, uint64, func(snapshot.Header) io.Writer) error {
	f.touch()
	return &base.NotLeaderError{Group: 1, Leader: "node2"}
}

func (f *fakeBackend) RestoreCheckpoint(context.Context, base.GroupID, io.Reader, raftnode.RestoreFence) (uint64, error) {
	f.touch()
	return 0, &base.NotLeaderError{Group: 1, Leader: "node2"}
}

func (f *fakeBackend) Tree(_ context.Context, g base.GroupID) (api.GroupTree, error) {
	f.touch()
	return api.GroupTree{Group: g, Depth: 1, Leaves: [][]byte{make([]byte, 32), make([]byte, 32)}}, nil
}

func (f *fakeBackend) BlockPeers(addrs []string) {
	f.touch()
	f.mu.Lock()
	f.blocked = addrs
	f.mu.Unlock()
}

func (f *fakeBackend) RoutePeers(via map[string]string) {
	f.touch()
	f.mu.Lock()
	f.via = via
	f.mu.Unlock()
}

func (f *fakeBackend) ProtocolVersion() int { return protocol.Version }

func (f *fakeBackend) ServeBatch(_ context.Context, b protocol.Batch) protocol.BatchReply {
	f.touch()
	w := base.ToWire(base.ErrUnavailable)
	out := protocol.BatchReply{}
	for range b.Requests {
		out.Results = append(out.Results, protocol.BatchResult{Error: &w})
	}
	return out
}

func newTestAPI(t *testing.T, b Backend) *httptest.Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxKeyBytes = 16
	cfg.MaxValueBytes = 64
	api, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

// newTestPeerAPI serves b's internal endpoints, as the Raft port does.
func newTestPeerAPI(t *testing.T, b Backend) *httptest.Server {
	t.Helper()
	api, err := New(b, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.PeerHandler())
	t.Cleanup(srv.Close)
	return srv
}

// Nothing under /v1/internal is served on the client listener, whatever
// the method: those endpoints install checkpoints and run internal
// operations, and only other nodes call them, on the Raft port.
func TestInternalEndpointsAreNotOnTheClientListener(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	peer := newTestPeerAPI(t, f)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/v1/internal/forward", `{"requests":[{"op":"drop","group":1,"ranges":[{"start":0,"end":0}],"limit":10000,"deadline_ms":1000}]}`},
		{"GET", "/v1/internal/groups/1/checkpoint", ""},
		{"POST", "/v1/internal/groups/1/restore", "not a checkpoint"},
		{"GET", "/v1/internal/forward", ""},
		{"PUT", "/v1/internal/anything", ""},
	} {
		resp, body := rawDo(t, srv, tt.method, tt.path, tt.body)
		wantError(t, resp, body, 404, "not_found")
	}
	// The peer listener serves them, and nothing else.
	resp, body := rawDo(t, peer, "POST", "/v1/internal/forward", "{]")
	wantError(t, resp, body, 400, "bad_request")
	resp, body = rawDo(t, peer, "PUT", "/v1/kv/k", "v")
	wantError(t, resp, body, 404, "not_found")
	if len(f.data) != 0 {
		t.Fatalf("requests changed data: %v", f.data)
	}
}

func do(t *testing.T, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// rawDo sends a request line exactly as written, so that paths with '..'
// and '%2F' reach the server unaltered.
func rawDo(t *testing.T, srv *httptest.Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	return send(t, req)
}

func send(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	var e map[string]interface{}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	if e["code"] != code || e["error"] == "" || e["error"] == nil {
		t.Fatalf("error body %s, want code %q and a message", body, code)
	}
}

func TestPutGetDelete(t *testing.T) {
	srv := newTestAPI(t, newFake())
	resp, body := do(t, "PUT", srv.URL+"/v1/kv/hello", strings.NewReader("world"))
	if resp.StatusCode != 200 {
		t.Fatalf("PUT status %d: %s", resp.StatusCode, body)
	}
	var w map[string]interface{}
	json.Unmarshal(body, &w)
	for _, f := range []string{"key", "index", "group", "raft_index"} {
		if _, ok := w[f]; !ok {
			t.Errorf("PUT answer lacks %q: %s", f, body)
		}
	}
	for h, want := range map[string]string{"Content-Type": "application/json", "X-Raft-Group": fmt.Sprint(w["group"]),
		"X-Raft-Index": fmt.Sprint(w["raft_index"]), "X-Served-By": "fake", "X-Ring-Epoch": "7"} {
		if got := resp.Header.Values(h); len(got) != 1 || got[0] != want {
			t.Errorf("PUT header %s = %q, want %q", h, got, want)
		}
	}
	resp, body = do(t, "GET", srv.URL+"/v1/kv/hello", nil)
	if resp.StatusCode != 200 || string(body) != "world" {
		t.Fatalf("GET = %d %q, want 200 world", resp.StatusCode, body)
	}
	for _, h := range []string{"X-KV-Index", "X-Raft-Group", "X-Raft-Index", "X-Served-By", "X-Ring-Epoch"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("GET lacks header %s", h)
		}
	}
	resp, body = do(t, "DELETE", srv.URL+"/v1/kv/hello", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE status %d: %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/kv/hello", nil)
	wantError(t, resp, body, 404, "not_found")
}

func TestKeysAreLiteral(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	for _, path := range []string{"/v1/kv/a/../b", "/v1/kv/a%2Fb", "/v1/kv/./x", "/v1/kv/sp%20ace"} {
		resp, body := rawDo(t, srv, "PUT", path, "v")
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, body)
		}
	}
	want := []string{"./x", "a/../b", "a/b", "sp ace"}
	var got []string
	for k := range f.data {
		got = append(got, k)
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored keys %q, want %q", got, want)
	}
	resp, body := rawDo(t, srv, "GET", "/v1/kv/a/../b", "")
	if resp.StatusCode != 200 || string(body) != "v" {
		t.Fatalf("GET a/../b = %d %q (no redirect, no cleaning expected)", resp.StatusCode, body)
	}
}

func TestBadInputGetsJSONErrorAndChangesNothing(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"empty key", "PUT", "/v1/kv/", "v", 400, "bad_request"},
		{"empty key get", "GET", "/v1/kv/", "", 400, "bad_request"},
		{"key too long", "PUT", "/v1/kv/" + strings.Repeat("k", 17), "v", 413, "too_large"},
		{"value too large", "PUT", "/v1/kv/k", strings.Repeat("v", 65), 413, "too_large"},
		{"cas not a number", "PUT", "/v1/kv/k?cas=abc", "v", 400, "bad_request"},
		{"cas negative", "PUT", "/v1/kv/k?cas=-1", "v", 400, "bad_request"},
		{"unknown consistency", "GET", "/v1/kv/k?consistency=eventual", "", 400, "bad_request"},
		{"async with cas", "PUT", "/v1/kv/k?replication=async&cas=3", "v", 400, "bad_request"},
		{"bad min_index", "GET", "/v1/kv/k?min_index=x", "", 400, "bad_request"},
		{"wait without index", "POST", "/v1/wait?group=1", "", 400, "bad_request"},
		{"wait bad timeout", "POST", "/v1/wait?group=1&index=1&timeout=forever", "", 400, "bad_request"},
		{"unknown replication", "PUT", "/v1/kv/k?replication=maybe", "v", 400, "bad_request"},
		{"bad limit", "GET", "/v1/kv/?recurse&limit=0", "", 400, "bad_request"},
		{"bad query encoding", "GET", "/v1/kv/k?consistency=%zz", "", 400, "bad_request"},
		{"recursive delete", "DELETE", "/v1/kv/k?recurse", "", 400, "bad_request"},
		{"join not json", "POST", "/v1/cluster/join", "{nope", 400, "bad_request"},
		{"join missing fields", "POST", "/v1/cluster/join", `{"id":"n4"}`, 400, "bad_request"},
		{"join unknown field", "POST", "/v1/cluster/join", `{"id":"n4","http_addr":"a","raft_addr":"b","x":1}`, 400, "bad_request"},
		{"join id with a slash", "POST", "/v1/cluster/join", `{"id":"../n4","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`, 400, "bad_request"},
		{"join id with NUL", "POST", "/v1/cluster/join", `{"id":"n\u00004","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`, 400, "bad_request"},
		{"join id with newline", "POST", "/v1/cluster/join", `{"id":"n\n4","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2"}`, 400, "bad_request"},
		{"join raft_addr not an address", "POST", "/v1/cluster/join", `{"id":"n4","http_addr":"127.0.0.1:1","raft_addr":"nowhere"}`, 400, "bad_request"},
		{"join port 0", "POST", "/v1/cluster/join", `{"id":"n4","http_addr":"127.0.0.1:0","raft_addr":"127.0.0.1:2"}`, 400, "bad_request"},
		{"join weight NaN-ish", "POST", "/v1/cluster/join", `{"id":"n4","http_addr":"127.0.0.1:1","raft_addr":"127.0.0.1:2","weight":-1}`, 400, "bad_request"},
		{"group id reserved for streams", "POST", "/v1/ring/groups", `{"id":4294967295}`, 400, "bad_request"},
		{"group id above the largest", "POST", "/v1/ring/groups", `{"id":1048576}`, 400, "bad_request"},
		{"weight of a reserved group", "PUT", "/v1/ring/groups/4294967294/weight", `{"weight":2}`, 400, "bad_request"},
		{"remove a reserved group", "DELETE", "/v1/ring/groups/4294967295", "", 400, "bad_request"},
		{"lookup without key", "GET", "/v1/ring/lookup", "", 400, "bad_request"},
		{"unknown path", "GET", "/v2/nothing", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawDo(t, srv, tt.method, tt.path, tt.body)
			wantError(t, resp, body, tt.status, tt.code)
		})
	}
	if len(f.data) != 0 || len(f.joins) != 0 {
		t.Fatalf("bad requests changed data: %v %v", f.data, f.joins)
	}
}

func TestChunkedValueOverLimit(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	// An io.Reader of unknown length makes the client send chunked, with no
	// Content-Length for the server to check.
	r := io.MultiReader(strings.NewReader(strings.Repeat("x", 40)), strings.NewReader(strings.Repeat("y", 40)))
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/kv/chunky", io.NopCloser(r))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	wantTooLarge(t, f, resp, err)
}

// wantTooLarge checks a 413 that stored nothing.
func wantTooLarge(t *testing.T, f *fakeBackend, resp *http.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp, body, 413, "too_large")
	if len(f.data) != 0 {
		t.Fatal("an oversized value was stored")
	}
}

func TestMethodNotAllowedHasAllow(t *testing.T) {
	srv := newTestAPI(t, newFake())
	tests := []struct{ method, path, allow string }{
		{"POST", "/v1/kv/k", "GET, PUT, DELETE"},
		{"PUT", "/v1/status", "GET"},
		{"GET", "/v1/cluster/join", "POST"},
		{"GET", "/v1/cluster/nodes/n1", "DELETE"},
	}
	for _, tt := range tests {
		resp, body := do(t, tt.method, srv.URL+tt.path, nil)
		wantError(t, resp, body, 405, "method_not_allowed")
		if got := resp.Header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

// The key-value route matches on its prefix: paths that only resemble it
// are unknown endpoints, and every method it lacks gets its 405.
func TestKVRouteMatchesItsPrefixOnly(t *testing.T) {
	srv := newTestAPI(t, newFake())
	for _, path := range []string{"/v1/kv", "/v1/kvx/a", "/v1/KV/a", "/x/v1/kv/a"} {
		resp, body := rawDo(t, srv, "PUT", path, "v")
		wantError(t, resp, body, 404, "not_found")
	}
	resp, body := rawDo(t, srv, "PATCH", "/v1/kv/a%2Fb", "v")
	wantError(t, resp, body, 405, "method_not_allowed")
	if resp, _ := rawDo(t, srv, "PUT", "/v1/kv/a%2Fb", "v"); resp.StatusCode != 200 {
		t.Fatalf("PUT a%%2Fb = %d", resp.StatusCode)
	}
	if resp, _ := rawDo(t, srv, "HEAD", "/v1/kv/a%2Fb", ""); resp.StatusCode != 200 {
		t.Fatalf("HEAD a%%2Fb = %d", resp.StatusCode)
	}
}

func TestErrorStatusTable(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{base.ErrNoLeader, 503, "no_leader"},
		{base.ErrUnavailable, 503, "unavailable"},
		{base.ErrOutcomeUnknown, 504, "timeout"},
		{&base.CASFailedError{Current: 7}, 412, "cas_failed"},
		{base.ErrClusterFull, 409, "cluster_full"},
	}
	for _, tt := range tests {
		f := newFake()
		f.err = tt.err
		srv := newTestAPI(t, f)
		resp, body := do(t, "PUT", srv.URL+"/v1/kv/k", strings.NewReader("v"))
		wantError(t, resp, body, tt.status, tt.code)
		if tt.status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%v: 503 without Retry-After", tt.err)
		}
		if cf, ok := tt.err.(*base.CASFailedError); ok && !bytes.Contains(body, []byte(fmt.Sprintf(`"index":%d`, cf.Current))) {
			t.Errorf("CAS failure body lacks current index: %s", body)
		}
	}
}

func TestCASOverHTTP(t *testing.T) {
	srv := newTestAPI(t, newFake())
	resp, body := do(t, "PUT", srv.URL+"/v1/kv/c?cas=0", strings.NewReader("1"))
	if resp.StatusCode != 200 {
		t.Fatalf("cas=0 on absent key: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "PUT", srv.URL+"/v1/kv/c?cas=0", strings.NewReader("2"))
	wantError(t, resp, body, 412, "cas_failed")
}

func TestRecurseListing(t *testing.T) {
	srv := newTestAPI(t, newFake())
	for _, k := range []string{"b/2", "a", "b/1", "b/3"} {
		do(t, "PUT", srv.URL+"/v1/kv/"+k, strings.NewReader("v"+k))
	}
	_, body := do(t, "GET", srv.URL+"/v1/kv/b/?recurse&keys", nil)
	if string(bytes.TrimSpace(body)) != `["b/1","b/2","b/3"]` {
		t.Fatalf("keys listing = %s", body)
	}
	_, body = do(t, "GET", srv.URL+"/v1/kv/?recurse&limit=2&after=a", nil)
	var es []listEntry
	if err := json.Unmarshal(body, &es); err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Key != "b/1" || string(es[0].Value) != "vb/1" {
		t.Fatalf("listing = %s", body)
	}
}

// Keys that are not valid UTF-8 come back exactly from every list form,
// and paging from one with after or after_base64 moves past it.
func TestListRoundTripsByteKeys(t *testing.T) {
	srv := newTestAPI(t, newFake())
	keys := []string{"k/\xff\xfe", "k/a", "k/\xc3\x28", "k/\u00e9"}
	for _, k := range keys {
		if resp, body := do(t, "PUT", srv.URL+"/v1/kv/"+url.PathEscape(k), strings.NewReader("v")); resp.StatusCode != 200 {
			t.Fatalf("put %q: %d %s", k, resp.StatusCode, body)
		} else if !utf8.ValidString(k) && !bytes.Contains(body, []byte(`"key_base64":"`+base64.StdEncoding.EncodeToString([]byte(k))+`"`)) {
			t.Fatalf("put %q answered %s, without its key_base64", k, body)
		}
	}
	sort.Strings(keys)
	exact := func(e listEntry) string {
		if e.KeyBase64 == "" {
			return e.Key
		}
		b, err := base64.StdEncoding.DecodeString(e.KeyBase64)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var es []listEntry
	_, body := do(t, "GET", srv.URL+"/v1/kv/k/?recurse", nil)
	if err := json.Unmarshal(body, &es); err != nil || len(es) != len(keys) {
		t.Fatalf("list = %s (%v)", body, err)
	}
	for i, e := range es {
		if exact(e) != keys[i] {
			t.Errorf("entry %d: key %q, want %q", i, exact(e), keys[i])
		}
	}
	// keys only: strings, and an object for a key no string can hold.
	var raw []json.RawMessage
	_, body = do(t, "GET", srv.URL+"/v1/kv/k/?recurse&keys", nil)
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != len(keys) {
		t.Fatalf("keys = %s (%v)", body, err)
	}
	for i, r := range raw {
		var e listEntry
		if err := json.Unmarshal(r, &e.Key); err != nil {
			if err := json.Unmarshal(r, &e); err != nil {
				t.Fatal(err)
			}
		}
		if exact(e) != keys[i] {
			t.Errorf("keys %d: %s, want %q", i, r, keys[i])
		}
	}
	// key_encoding=base64: every key base64, strings only.
	var b64 []string
	_, body = do(t, "GET", srv.URL+"/v1/kv/k/?recurse&keys&key_encoding=base64", nil)
	if err := json.Unmarshal(body, &b64); err != nil || len(b64) != len(keys) {
		t.Fatalf("base64 keys = %s (%v)", body, err)
	}
	for i, k := range b64 {
		if d, _ := base64.StdEncoding.DecodeString(k); string(d) != keys[i] {
			t.Errorf("base64 key %d = %q, want %q", i, d, keys[i])
		}
	}
	// Paging one key at a time through after_base64 reaches the end.
	after, seen := "", 0
	for ; seen <= len(keys); seen++ {
		q := "/v1/kv/k/?recurse&limit=1"
		if after != "" {
			q += "&after_base64=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte(after)))
		}
		var page []listEntry
		_, body := do(t, "GET", srv.URL+q, nil)
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if exact(page[0]) <= after {
			t.Fatalf("page after %q went back to %q", after, exact(page[0]))
		}
		after = exact(page[0])
	}
	if seen != len(keys) {
		t.Fatalf("paged through %d keys, want %d", seen, len(keys))
	}
	// As curl sends it unescaped ('+' read as a space) and URL-safe.
	for _, q := range []string{"after_base64=ay//+g", "after_base64=ay//+g==", "after_base64=ay__-g"} {
		var page []listEntry
		_, body := do(t, "GET", srv.URL+"/v1/kv/k/?recurse&limit=1&"+q, nil)
		if err := json.Unmarshal(body, &page); err != nil || len(page) != 1 || exact(page[0]) != "k/\xff\xfe" {
			t.Fatalf("%s (after k/\\xff\\xfa): %s", q, body)
		}
	}
	resp, body := do(t, "GET", srv.URL+"/v1/kv/k/?recurse&after_base64=%%%", nil)
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "GET", srv.URL+"/v1/kv/k/?recurse&after=a&after_base64=YQ==", nil)
	wantError(t, resp, body, 400, "bad_request")
}

// A list far larger than one write goes out as it is read, and a list
// that fails half way cuts the connection: the client sees a broken
// answer, never a short array that parses.
func TestListStreamsAndFailsLoudly(t *testing.T) {
	f := newFake()
	for i := 0; i < 5000; i++ {
		k := fmt.Sprintf("s/%05d", i)
		f.data[k] = protocol.KV{Key: []byte(k), Value: bytes.Repeat([]byte("v"), 100), Group: 1}
	}
	srv := newTestAPI(t, f)
	resp, body := do(t, "GET", srv.URL+"/v1/kv/s/?recurse", nil)
	var es []listEntry
	if err := json.Unmarshal(body, &es); err != nil || len(es) != 5000 || resp.ContentLength != -1 {
		t.Fatalf("list of 5000: %d entries, content length %d (%v)", len(es), resp.ContentLength, err)
	}
	f.listFailAt = 4000
	resp, err := http.Get(srv.URL + "/v1/kv/s/?recurse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a list that failed after 4000 keys read as a whole answer (%d bytes)", len(got))
	}
	if json.Unmarshal(got, &es) == nil {
		t.Fatal("a list cut short parsed as JSON")
	}
	// Failing before the first write is an ordinary JSON error.
	f.listFailAt = 1
	resp2, body := do(t, "GET", srv.URL+"/v1/kv/s/?recurse", nil)
	wantError(t, resp2, body, 503, "no_leader")
}

// The ring's tokens come only when asked, for clients that route keys
// themselves.
func TestRingTokensOnlyWhenAsked(t *testing.T) {
	srv := newTestAPI(t, newFake())
	_, plain := do(t, "GET", srv.URL+"/v1/ring", nil)
	if bytes.Contains(plain, []byte("tokens")) {
		t.Errorf("GET /v1/ring carries tokens: %s", plain)
	}
	resp, body := do(t, "GET", srv.URL+"/v1/ring?tokens=true", nil)
	var ri api.RingInfo
	if err := json.Unmarshal(body, &ri); err != nil || resp.StatusCode != 200 || len(ri.Groups) != 1 || len(ri.Groups[0].Tokens) != 2 {
		t.Fatalf("GET /v1/ring?tokens=true = %d %s", resp.StatusCode, body)
	}
	if _, err := ring.FromState(ri.State()); err != nil {
		t.Errorf("the ring from /v1/ring?tokens=true does not rebuild: %v", err)
	}
	if resp, _ := do(t, "GET", srv.URL+"/v1/ring?tokens=maybe", nil); resp.StatusCode != 400 {
		t.Errorf("tokens=maybe = %d, want 400", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	if resp, _ := do(t, "GET", srv.URL+"/readyz", nil); resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "fake" {
		t.Errorf("readyz = %d, X-Served-By %q; want 200 naming the node", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}
	f.err = base.ErrNoLeader
	if resp, _ := do(t, "GET", srv.URL+"/readyz", nil); resp.StatusCode != 503 || resp.Header.Get("X-Served-By") != "fake" {
		t.Errorf("readyz = %d, want 503 naming the node", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", srv.URL+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz = %d, want 200", resp.StatusCode)
	}
	resp, body := do(t, "GET", srv.URL+"/metrics", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("ringkv_http_request_duration_seconds")) {
		t.Errorf("metrics lacks the request histogram")
	}
}

func TestFaultHookOnlyWhenEnabled(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	resp, body := do(t, "POST", srv.URL+"/v1/debug/fault", strings.NewReader(`{"block":["x:1"]}`))
	wantError(t, resp, body, 404, "not_found")

	cfg := DefaultConfig()
	cfg.FaultHook = true
	api, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(api)
	defer hook.Close()
	resp, body = do(t, "POST", hook.URL+"/v1/debug/fault", strings.NewReader(`{"block":["x:1"]}`))
	if resp.StatusCode != 200 || len(f.blocked) != 1 || f.blocked[0] != "x:1" {
		t.Fatalf("fault hook: %d %s, blocked %v", resp.StatusCode, body, f.blocked)
	}
	resp, body = do(t, "POST", hook.URL+"/v1/debug/fault", strings.NewReader(`{"nope":1}`))
	wantError(t, resp, body, 400, "bad_request")
}

func TestVerifyEndpoints(t *testing.T) {
	srv := newTestAPI(t, newFake())
	resp, body := do(t, "POST", srv.URL+"/v1/verify", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"agree":false`)) {
		t.Fatalf("verify all: %d %s, want agree false (group 2 disagrees)", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", srv.URL+"/v1/groups/1/verify", nil)
	if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte(`{"agree":true`)) {
		t.Fatalf("verify group 1: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", srv.URL+"/v1/groups/x/verify", nil)
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "POST", srv.URL+"/v1/groups/9/verify", nil)
	wantError(t, resp, body, 404, "not_found")
	resp, body = do(t, "GET", srv.URL+"/v1/verify", nil)
	wantError(t, resp, body, 405, "method_not_allowed")
	resp, body = do(t, "POST", srv.URL+"/v1/snapshot", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"taken":true`)) {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}
}

func TestBackupRestoreEndpointsRefuseBadInput(t *testing.T) {
	srv := newTestAPI(t, newFake())
	resp, body := do(t, "POST", srv.URL+"/v1/restore", strings.NewReader("this is not a backup archive"))
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "POST", srv.URL+"/v1/restore?force=maybe", strings.NewReader(""))
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "PUT", srv.URL+"/v1/backup", nil)
	wantError(t, resp, body, 405, "method_not_allowed")
	resp, body = do(t, "GET", srv.URL+"/v1/backup", nil)
	wantError(t, resp, body, 503, "unavailable")
	resp, body = do(t, "GET", srv.URL+"/v1/groups/0/merkle", nil)
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "GET", srv.URL+"/v1/groups/1/merkle", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"depth":1`)) {
		t.Fatalf("merkle: %d %s", resp.StatusCode, body)
	}
	peer := newTestPeerAPI(t, newFake())
	resp, body = do(t, "GET", peer.URL+"/v1/internal/groups/1/checkpoint?min_index=x", nil)
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "GET", peer.URL+"/v1/internal/groups/1/checkpoint", nil)
	wantError(t, resp, body, 421, "not_leader")
	resp, body = do(t, "GET", peer.URL+"/v1/internal/groups/4294967295/checkpoint", nil)
	wantError(t, resp, body, 400, "bad_request")
	resp, body = do(t, "POST", srv.URL+"/v1/verify?deep=sometimes", nil)
	wantError(t, resp, body, 400, "bad_request")
}

func TestAsyncWriteWaitAndMinIndex(t *testing.T) {
	srv := newTestAPI(t, newFake())
	resp, body := do(t, "PUT", srv.URL+"/v1/kv/a?replication=async", strings.NewReader("1"))
	if resp.StatusCode != 202 || resp.Header.Get("X-Raft-Index") != "1" || resp.Header.Get("X-Raft-Group") != "1" || resp.Header.Get("X-Raft-Term") != "2" ||
		!bytes.Contains(body, []byte(`"replication":"async"`)) {
		t.Fatalf("async put: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = do(t, "PUT", srv.URL+"/v1/kv/b", strings.NewReader("2"))
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"replication":"sync"`)) {
		t.Fatalf("sync put: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", srv.URL+"/v1/wait?group=1&index=2&term=2&timeout=1s", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"committed":true`)) {
		t.Fatalf("wait: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", srv.URL+"/v1/wait?group=1&index=50&timeout=10ms", nil)
	wantError(t, resp, body, 504, "timeout")
	resp, body = do(t, "POST", srv.URL+"/v1/wait?group=1&index=99", nil)
	wantError(t, resp, body, 410, "lost")
	resp, body = do(t, "GET", srv.URL+"/v1/kv/a?min_index=2", nil)
	if resp.StatusCode != 200 || string(body) != "1" {
		t.Fatalf("read at min_index: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.URL+"/v1/kv/a?consistency=stale&min_index=7", nil)
	wantError(t, resp, body, 504, "timeout")
}

func TestAsyncByDefault(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Replication = "async"
	cfg.MaxKeyBytes, cfg.MaxValueBytes = 16, 64
	a, err := New(newFake(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	resp, body := do(t, "PUT", srv.URL+"/v1/kv/a", strings.NewReader("1"))
	if resp.StatusCode != 202 {
		t.Fatalf("put on an async server: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "PUT", srv.URL+"/v1/kv/a?replication=sync", strings.NewReader("1"))
	if resp.StatusCode != 200 {
		t.Fatalf("sync put on an async server: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "PUT", srv.URL+"/v1/kv/a?cas=2", strings.NewReader("2"))
	if resp.StatusCode != 200 {
		t.Fatalf("a CAS on an async server is synchronous: %d %s", resp.StatusCode, body)
	}
}

func TestRingPlanQuery(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	for q, want := range map[string]string{
		"add=4":      "add group 4 with weight 1",
		"add=5:3":    "add group 5 with weight 3",
		"remove=2":   "remove group 2",
		"weight=1:2": "set group 1's weight to 2",
	} {
		resp, body := do(t, "GET", srv.URL+"/v1/ring/plan?"+q, nil)
		var p api.Plan
		if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil || p.Change != want {
			t.Fatalf("plan?%s = %d %s, want 200 with change %q", q, resp.StatusCode, body, want)
		}
	}
	asked := len(f.plans)
	for _, q := range []string{"", "add=", "add=0", "add=x", "add=4:0", "add=4:-1", "add=4:y", "add=4294967296",
		"remove=2:1", "weight=2", "add=4&remove=2", "add=4&add=5", "weight=1:2&ranges=maybe", "%zz"} {
		resp, body := do(t, "GET", srv.URL+"/v1/ring/plan?"+q, nil)
		wantError(t, resp, body, 400, "bad_request")
	}
	if len(f.plans) != asked {
		t.Fatalf("bad plan queries reached the backend: %v", f.plans[asked:])
	}
}

func TestRingChangeEndpoints(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/ring/groups", "", "add group 9 with weight 1"},
		{"POST", "/v1/ring/groups", `{}`, "add group 9 with weight 1"},
		{"POST", "/v1/ring/groups", `{"id":5,"weight":2}`, "add group 5 with weight 2"},
		{"DELETE", "/v1/ring/groups/2", "", "remove group 2"},
		{"PUT", "/v1/ring/groups/3/weight", `{"weight":3}`, "set group 3's weight to 3"},
		{"PUT", "/v1/ring/groups/3/weight", `{"id":3,"weight":2}`, "set group 3's weight to 2"},
	} {
		resp, body := do(t, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		var got struct {
			Started string `json:"started"`
		}
		if resp.StatusCode != 202 || json.Unmarshal(body, &got) != nil || got.Started != tc.want {
			t.Fatalf("%s %s %s = %d %s, want 202 starting %q", tc.method, tc.path, tc.body, resp.StatusCode, body, tc.want)
		}
	}
	started := len(f.changes)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/ring/groups", `{"weight":0}`},
		{"POST", "/v1/ring/groups", `{"weight":65}`},
		{"POST", "/v1/ring/groups", `{"id":0}`},
		{"POST", "/v1/ring/groups", `{"id":-1}`},
		{"POST", "/v1/ring/groups", `{"x":1}`},
		{"POST", "/v1/ring/groups", `[1]`},
		{"POST", "/v1/ring/groups", `{"weight":"a"}`},
		{"POST", "/v1/ring/groups", `{} {}`},
		{"DELETE", "/v1/ring/groups/abc", ""},
		{"DELETE", "/v1/ring/groups/0", ""},
		{"PUT", "/v1/ring/groups/3/weight", ""},
		{"PUT", "/v1/ring/groups/3/weight", `{"id":4,"weight":2}`},
	} {
		resp, body := do(t, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		wantError(t, resp, body, 400, "bad_request")
	}
	if len(f.changes) != started {
		t.Fatalf("bad ring changes reached the backend: %+v", f.changes[started:])
	}
	resp, _ := do(t, "DELETE", srv.URL+"/v1/ring/migration", nil)
	if resp.StatusCode != 202 || len(f.changes) != started+1 {
		t.Fatalf("DELETE /v1/ring/migration = %d, want 202 and the abort passed on", resp.StatusCode)
	}
	f.ringErr = fmt.Errorf("%w: a ring change is in progress", base.ErrConflict)
	resp, body := do(t, "DELETE", srv.URL+"/v1/ring/groups/2", nil)
	wantError(t, resp, body, 409, "conflict")
	resp, body = do(t, "DELETE", srv.URL+"/v1/ring/migration", nil)
	wantError(t, resp, body, 409, "conflict")
	resp, body = do(t, "GET", srv.URL+"/v1/ring/groups", nil)
	wantError(t, resp, body, 405, "method_not_allowed")
}

func TestPinLeaderEndpoint(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	resp, body := do(t, "PUT", srv.URL+"/v1/groups/2/leader", strings.NewReader(`{"node":"n3"}`))
	if resp.StatusCode != 202 || f.pins[2] != "n3" {
		t.Fatalf("pin: %d %s, pins %v", resp.StatusCode, body, f.pins)
	}
	resp, body = do(t, "DELETE", srv.URL+"/v1/groups/2/leader", nil)
	if resp.StatusCode != 202 || f.pins[2] != "" {
		t.Fatalf("unpin: %d %s, pins %v", resp.StatusCode, body, f.pins)
	}
	f.pins = nil
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/groups/2/leader", ""},
		{"PUT", "/v1/groups/2/leader", `{}`},
		{"PUT", "/v1/groups/2/leader", `{"node":""}`},
		{"PUT", "/v1/groups/2/leader", `{"node":"n1","x":1}`},
		{"PUT", "/v1/groups/x/leader", `{"node":"n1"}`},
		{"DELETE", "/v1/groups/0/leader", ""},
	} {
		resp, body := do(t, tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		wantError(t, resp, body, 400, "bad_request")
	}
	if len(f.pins) != 0 {
		t.Fatalf("bad pins reached the backend: %v", f.pins)
	}
}

func TestNodeRemovalAndDrain(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	resp, body := do(t, "DELETE", srv.URL+"/v1/cluster/nodes/busy", nil)
	if resp.StatusCode != 202 || !strings.Contains(string(body), `"draining":true`) || !strings.Contains(string(body), `"replicas":4`) {
		t.Fatalf("removing a node with replicas: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "DELETE", srv.URL+"/v1/cluster/nodes/ghost", nil)
	wantError(t, resp, body, 404, "not_found")
	for _, m := range []string{"PUT", "DELETE"} {
		resp, body = do(t, m, srv.URL+"/v1/cluster/nodes/busy/drain", nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), fmt.Sprintf(`"draining":%v`, m == "PUT")) {
			t.Fatalf("%s drain: %d %s", m, resp.StatusCode, body)
		}
	}
	resp, body = do(t, "PUT", srv.URL+"/v1/cluster/nodes/ghost/drain", nil)
	wantError(t, resp, body, 404, "not_found")
	resp, body = do(t, "GET", srv.URL+"/v1/cluster/nodes/busy/drain", nil)
	wantError(t, resp, body, 405, "method_not_allowed")
	resp, body = do(t, "GET", srv.URL+"/v1/cluster", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"replication":3`) {
		t.Fatalf("cluster: %d %s", resp.StatusCode, body)
	}
	for _, b := range []string{
		`{"id":"n4","http_addr":"h","raft_addr":"r","weight":-1}`,
		`{"id":"n4","http_addr":"h","raft_addr":"r","weight":1001}`,
		`{"id":"n4","http_addr":"h","raft_addr":"r","weight":"2"}`,
		`{"id":"n4","http_addr":"h","raft_addr":"r","draining":true}`,
		`{"id":"n4","http_addr":"h","raft_addr":"r"} {}`,
	} {
		resp, body = do(t, "POST", srv.URL+"/v1/cluster/join", strings.NewReader(b))
		wantError(t, resp, body, 400, "bad_request")
	}
	if len(f.joins) != 0 {
		t.Fatalf("bad joins reached the node: %v", f.joins)
	}
}

// A value over the limit is refused from its Content-Length, before any
// of it is read: a client that waits for "100 Continue" is never invited
// to send it.
func TestOversizedBodyRefusedBeforeItIsRead(t *testing.T) {
	f := newFake()
	srv := newTestAPI(t, f)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	wantTooLarge(t, f, resp, err)
}

// Lists beyond the node's bound wait, then get 503 with Retry-After; the
// ones running finish, and a list once a slot is free is answered.
func TestConcurrentListsAreBounded(t *testing.T) {
	f := newFake()
	f.listing, f.listGate = make(chan struct{}, 8), make(chan struct{})
	cfg := DefaultConfig()
	cfg.MaxConcurrentLists, cfg.ListQueueWait = 2, 50*time.Millisecond
	api, err := New(f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	done := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, _ := do(t, "GET", srv.URL+"/v1/kv/?recurse", nil)
			done <- resp.StatusCode
		}()
	}
	<-f.listing
	<-f.listing
	resp, body := do(t, "GET", srv.URL+"/v1/kv/?recurse", nil)
	wantError(t, resp, body, 503, "unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("a refused list has no Retry-After")
	}
	close(f.listGate)
	for i := 0; i < 2; i++ {
		if code := <-done; code != 200 {
			t.Fatalf("a running list ended with %d", code)
		}
	}
	if resp, body := do(t, "GET", srv.URL+"/v1/kv/?recurse", nil); resp.StatusCode != 200 {
		t.Fatalf("a list after the others: %d %s", resp.StatusCode, body)
	}
}
