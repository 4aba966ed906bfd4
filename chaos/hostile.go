package chaos

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/client"
)

// The hostile suite sends a cluster what a careless operator, a hostile
// client or a stray packet could: reserved and absurd values on the REST
// API, calls to the internal endpoints on the client port, and forged or
// damaged Raft RPCs and frames on the Raft port. After each case every node
// must still be alive and ready, every group must have a leader at a sane
// term, a key written before the suite must read back unchanged, and a new
// write must succeed. Each case also says what answer it expects (a 400
// naming the rule, a 404, a refused connection) and fails if it gets
// another.

// HostileResult is one case's outcome.
type HostileResult struct {
	Name string `json:"name"`
	// Sent is what the case sent, in words; Got what came back.
	Sent  string `json:"sent"`
	Got   string `json:"got"`
	Error string `json:"error,omitempty"`
}

// OK reports whether the case passed.
func (r HostileResult) OK() bool { return r.Error == "" }

// HostileOptions tune the suite.
type HostileOptions struct {
	// Recover bounds how long the cluster may take to be ready again
	// after a case (default 30s).
	Recover time.Duration
	// Log, when set, receives a line per case as it ends.
	Log func(HostileResult)
	// Token is a management token of a cluster with access control: the
	// suite acts with it, and adds the cases of tokens and policies.
	Token string
}

// maxSaneTerm bounds the Raft terms a healthy cluster shows: far above
// any real one, far below the wrap that absurd terms once caused.
const maxSaneTerm = 1 << 48

// Hostile runs every hostile case against the cluster whose nodes answer
// at endpoints (HTTP URLs). It returns one result per case; the error is
// for a cluster that was not healthy to begin with.
func Hostile(ctx context.Context, endpoints []string, o HostileOptions) ([]HostileResult, error) {
	if o.Recover <= 0 {
		o.Recover = 30 * time.Second
	}
	h := &hostile{o: o}
	for _, e := range endpoints {
		h.nodes = append(h.nodes, client.New(e, client.WithToken(o.Token)))
	}
	h.endpoints = endpoints
	defer func() {
		for _, c := range h.nodes {
			c.Close()
		}
	}()
	if err := h.healthy(ctx); err != nil {
		return nil, fmt.Errorf("the cluster is not healthy before the suite: %w", err)
	}
	canary := fmt.Sprintf("hostile/canary/%d", time.Now().UnixNano())
	if _, err := h.nodes[0].Put(ctx, canary, []byte("before"), client.PutOptions{}); err != nil {
		return nil, fmt.Errorf("writing the canary: %w", err)
	}
	h.canary = canary
	var out []HostileResult
	cases := hostileCases()
	if o.Token != "" {
		cases = append(cases, aclCases()...)
	}
	for _, c := range cases {
		r := HostileResult{Name: c.name}
		sent, got, err := c.run(ctx, h)
		r.Sent, r.Got = sent, got
		if err == nil {
			err = h.healthy(ctx)
		}
		if err != nil {
			r.Error = err.Error()
		}
		if o.Log != nil {
			o.Log(r)
		}
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out, nil
}

type hostile struct {
	o         HostileOptions
	endpoints []string
	nodes     []*client.Client
	canary    string
	seq       int
}

type hostileCase struct {
	name string
	run  func(ctx context.Context, h *hostile) (sent, got string, err error)
}

// healthy waits until every node is ready, every group it reports has a
// leader at a sane term, the canary reads back, and a write succeeds.
func (h *hostile) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.o.Recover)
	defer cancel()
	var last error
	for {
		if last = h.check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy within %v: %w", h.o.Recover, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *hostile) check(ctx context.Context) error {
	for _, c := range h.nodes {
		alive, ready, why := c.Healthy(ctx)
		if !alive || !ready {
			return fmt.Errorf("%s: alive %v, ready %v: %s", c.Addr(), alive, ready, why)
		}
		st, err := c.Status(ctx)
		if err != nil {
			return fmt.Errorf("%s: status: %w", c.Addr(), err)
		}
		for _, g := range append([]client.GroupStatus{st.Meta}, st.Groups...) {
			if g.Leader == "" || g.Term > maxSaneTerm {
				return fmt.Errorf("%s: group %d: leader %q at term %d", c.Addr(), g.ID, g.Leader, g.Term)
			}
		}
	}
	if h.canary != "" {
		v, err := h.nodes[len(h.nodes)-1].Get(ctx, h.canary, "linearizable")
		if err != nil || string(v.Data) != "before" {
			return fmt.Errorf("canary %q reads %q, %v", h.canary, v.Data, err)
		}
	}
	h.seq++
	if _, err := h.nodes[h.seq%len(h.nodes)].Put(ctx, fmt.Sprintf("hostile/after/%d", h.seq), []byte("x"), client.PutOptions{}); err != nil {
		return fmt.Errorf("a write after the case: %w", err)
	}
	return nil
}

// briefly reports c's request as sent instead of in full.
func briefly(c hostileCase, sent string) hostileCase {
	run := c.run
	c.run = func(ctx context.Context, h *hostile) (string, string, error) {
		_, got, err := run(ctx, h)
		return sent, got, err
	}
	return c
}

// manyGroups is a watch cursor naming n groups.
func manyGroups(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("%d:0", i+1)
	}
	return strings.Join(parts, ",")
}

func hostileCases() []hostileCase {
	join := func(id, httpAddr, raftAddr string) map[string]string {
		return map[string]string{"id": id, "http_addr": httpAddr, "raft_addr": raftAddr}
	}
	cases := []hostileCase{
		{name: "weight of the only group", run: onlyGroupWeight},
		restCase("add the forwarding streams' group id", "POST", "/v1/ring/groups", map[string]uint32{"id": math.MaxUint32}, 400, "bad_request"),
		restCase("add a reserved group id", "POST", "/v1/ring/groups", map[string]uint32{"id": 1 << 20}, 400, "bad_request"),
		restCase("weight of a reserved group", "PUT", "/v1/ring/groups/4294967294/weight", map[string]int{"weight": 2}, 400, "bad_request"),
		restCase("weight out of range", "PUT", "/v1/ring/groups/1/weight", map[string]int{"weight": 1 << 30}, 400, "bad_request"),
		restCase("join with NUL in the id", "POST", "/v1/cluster/join", join("a\x00b", "127.0.0.1:1", "127.0.0.1:2"), 400, "bad_request"),
		restCase("join with a newline in the id", "POST", "/v1/cluster/join", join("a\nb", "127.0.0.1:1", "127.0.0.1:2"), 400, "bad_request"),
		restCase("join with a path as the id", "POST", "/v1/cluster/join", join("../../etc", "127.0.0.1:1", "127.0.0.1:2"), 400, "bad_request"),
		restCase("join with addresses that are none", "POST", "/v1/cluster/join", join("f", "here", "there"), 400, "bad_request"),
		restCase("join with port 0", "POST", "/v1/cluster/join", join("f", "127.0.0.1:0", "127.0.0.1:0"), 400, "bad_request"),
		restCase("internal forward on the client port", "POST", "/v1/internal/forward",
			map[string]interface{}{"requests": []map[string]interface{}{{"op": "drop", "group": 1, "ranges": []map[string]uint64{{"start": 0, "end": 0}},
				"limit": 10000, "term": uint64(1) << 62, "deadline_ms": 1000}}}, 404, "not_found"),
		restCase("internal restore on the client port", "POST", "/v1/internal/groups/1/restore", nil, 404, "not_found"),
		restCase("internal checkpoint on the client port", "GET", "/v1/internal/groups/1/checkpoint", nil, 404, "not_found"),
		{name: "random bytes after a valid header", run: func(ctx context.Context, h *hostile) (string, string, error) {
			return h.forgeEach(ctx, "64 KiB of random bytes to each group, the streams and the peer endpoint", func(g uint32, term uint64) []byte {
				b := make([]byte, 64<<10)
				rand.Read(b)
				return b
			})
		}},
		{name: "random bytes without a header to the Raft port", run: func(ctx context.Context, h *hostile) (string, string, error) {
			return h.eachRaftPort(ctx, "64 KiB of random bytes, no header", func(addr string) (string, error) {
				b := make([]byte, 64<<10)
				rand.Read(b)
				a, err := sendRaw(ctx, addr, nil, b)
				if err == nil && strings.HasPrefix(a, "open") {
					err = fmt.Errorf("the connection stayed open (%s)", a)
				}
				return a, err
			})
		}},
		{name: "a TLS client hello with a self-signed certificate to the Raft port", run: selfSignedHello},
		{name: "internal forward with an absurd mover term on the Raft port", run: absurdMoverTerm},
		{name: "a key that is not UTF-8", run: byteKeyRoundTrip},
		briefly(restCase("a watch cursor naming 5000 groups", "GET", "/v1/watch/?since="+manyGroups(5000), nil, 400, "bad_request"),
			"GET /v1/watch/?since=1:0,2:0,...,5000:0"),
		restCase("a watch cursor past every history", "GET", "/v1/watch/?since=1:18446744073709551615", nil, 410, "compacted"),
		restCase("a watch cursor naming group 0", "GET", "/v1/watch/?since=0:1", nil, 400, "bad_request"),
		restCase("a blocking read of an index the key never had", "GET", "/v1/kv/hostile-absent?index=77&wait=10m", nil, 404, "not_found"),
		restCase("a blocking read with a wait that is none", "GET", "/v1/kv/hostile-absent?index=0&wait=-1s", nil, 400, "bad_request"),
	}
	for _, f := range ForgedRPCs(0) {
		cases = append(cases, hostileCase{name: f.Name, run: func(ctx context.Context, h *hostile) (string, string, error) {
			return h.forgeEach(ctx, f.Sent, func(g uint32, term uint64) []byte {
				for _, at := range ForgedRPCs(term) {
					if at.Name == f.Name {
						return at.Bytes
					}
				}
				return nil
			})
		}})
	}
	return cases
}

// ForgedRPC is a Raft RPC as a node's network transport reads it after the
// Raft port's header: its type byte, then the request in msgpack.
type ForgedRPC struct {
	Name, Sent string
	Bytes      []byte
}

// ForgedRPCs are the Raft RPCs that once stopped a group or a node, built
// for a group at term (the group's current term, so that raft acts on
// them): absurd terms (which wrapped), snapshots with an empty or damaged
// configuration (which panicked), and an entry of a type raft panics on
// when it commits.
func ForgedRPCs(term uint64) []ForgedRPC {
	return []ForgedRPC{
		{"RequestVote with term 2^64-1", "RequestVote{term: 2^64-1, leadership transfer}",
			rpcFrame(rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: forgedHeader(), Term: math.MaxUint64,
				LastLogIndex: math.MaxUint64, LastLogTerm: math.MaxUint64, LeadershipTransfer: true})},
		{"PreVote and AppendEntries with absurd terms", "RequestPreVote{term: 2^63}, then AppendEntries{term: 2^63}",
			append(rpcFrame(rpcRequestPreVote, &raft.RequestPreVoteRequest{RPCHeader: forgedHeader(), Term: 1 << 63, LastLogIndex: 1 << 62, LastLogTerm: 1 << 62}),
				rpcFrame(rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: forgedHeader(), Term: 1 << 63})...)},
		{"InstallSnapshot with an empty configuration", "InstallSnapshot{term: current, configuration: empty}",
			rpcFrame(rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: forgedHeader(), SnapshotVersion: 1,
				Term: term, LastLogIndex: 1 << 40, LastLogTerm: term, Size: 0})},
		{"InstallSnapshot with a damaged configuration", "InstallSnapshot{term: current, configuration: 0xc1 0xff}",
			rpcFrame(rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: forgedHeader(), SnapshotVersion: 1,
				Term: term, LastLogIndex: 1 << 40, LastLogTerm: term, Configuration: []byte{0xc1, 0xff}, Size: 0})},
		{"AppendEntries with an entry of unknown type", "AppendEntries{term: current, entries: [type 200]}",
			rpcFrame(rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: forgedHeader(), Term: term,
				Entries: []*raft.Log{{Index: 1, Term: term, Type: 200}}})},
		{"AppendEntries with a gap, committed", "AppendEntries{term: current+1, after index 0, entries: [index 1000], commit 1000}",
			rpcFrame(rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: forgedHeader(), Term: term + 1, LeaderCommitIndex: 1000,
				Entries: []*raft.Log{{Index: 1000, Term: term + 1, Type: raft.LogNoop}}})},
	}
}

// onlyGroupWeight asks for the weight of the only group, on a ring that
// has one; on a larger ring, for group 1 to keep its own weight.
func onlyGroupWeight(ctx context.Context, h *hostile) (string, string, error) {
	ring, err := h.nodes[0].Ring(ctx)
	if err != nil {
		return "GET /v1/ring", "", err
	}
	if len(ring.Groups) == 0 {
		return "GET /v1/ring", "no groups", errors.New("the ring has no groups")
	}
	g := ring.Groups[0]
	w := g.Weight
	if len(ring.Groups) == 1 {
		w++
	}
	path := fmt.Sprintf("/v1/ring/groups/%d/weight", g.ID)
	sent := fmt.Sprintf("PUT %s {\"weight\":%d} (%d groups)", path, w, len(ring.Groups))
	got, err := refused(h.nodes[0].DoJSON(ctx, "PUT", path, map[string]int{"weight": w}, nil), 400, "bad_request")
	return sent, got, err
}

// Raft RPC types, as hashicorp/raft's network transport numbers them.
const (
	rpcAppendEntries   = 0
	rpcRequestVote     = 1
	rpcInstallSnapshot = 2
	rpcRequestPreVote  = 4
)

// Mux header groups of the Raft port that are not Raft groups.
const (
	streamsGroup  = math.MaxUint32
	peerHTTPGroup = math.MaxUint32 - 1
)

func forgedHeader() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte("127.0.0.1:1")}
}

// rpcFrame is one Raft RPC as the network transport reads it: its type,
// then the request in msgpack.
func rpcFrame(kind byte, req interface{}) []byte {
	var b bytes.Buffer
	b.WriteByte(kind)
	_ = codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(req)
	return b.Bytes()
}

// muxHeader opens a connection to a node's Raft port for group g.
func muxHeader(g uint32, self string) []byte {
	h := []byte{'R', 1, 0, 0, 0, 0, byte(len(self))}
	binary.BigEndian.PutUint32(h[2:6], g)
	return append(h, self...)
}

// ownStatus returns a node's status and the Raft address it advertises.
func ownStatus(ctx context.Context, c *client.Client) (client.Status, string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return st, "", err
	}
	for _, m := range st.Members {
		if m.ID == st.Node {
			return st, m.RaftAddr, nil
		}
	}
	return st, "", fmt.Errorf("%s: its own Raft address is not in its status", c.Addr())
}

// forgeEach sends what build returns to every group (and the Raft port's
// other streams) of every node, on its own connection each, and reads what
// comes back until the node closes the connection or a second passes.
func (h *hostile) forgeEach(ctx context.Context, sent string, build func(g uint32, term uint64) []byte) (string, string, error) {
	var answers []string
	for _, c := range h.nodes {
		st, raftAddr, err := ownStatus(ctx, c)
		if err != nil {
			return sent, "", err
		}
		targets := map[uint32]uint64{0: st.Meta.Term, streamsGroup: 0, peerHTTPGroup: 0}
		for _, g := range st.Groups {
			targets[g.ID] = g.Term
		}
		for g, term := range targets {
			a, err := sendRaw(ctx, raftAddr, muxHeader(g, "127.0.0.1:1"), build(g, term))
			if err != nil {
				return sent, strings.Join(answers, "; "), fmt.Errorf("%s group %d: %w", raftAddr, g, err)
			}
			answers = append(answers, a)
		}
	}
	return sent, summarize(answers), nil
}

// eachRaftPort runs try against every node's Raft port.
func (h *hostile) eachRaftPort(ctx context.Context, sent string, try func(addr string) (string, error)) (string, string, error) {
	var answers []string
	for _, c := range h.nodes {
		_, raftAddr, err := ownStatus(ctx, c)
		if err != nil {
			return sent, "", err
		}
		a, err := try(raftAddr)
		answers = append(answers, a)
		if err != nil {
			return sent, strings.Join(answers, "; "), fmt.Errorf("%s: %w", raftAddr, err)
		}
	}
	return sent, summarize(answers), nil
}

// selfSignedHello opens TLS to each Raft port with a certificate no CA
// signed, then sends a group's header and a forged RPC: a node with peer
// TLS refuses the certificate, one without refuses TLS; neither may take
// the bytes.
func selfSignedHello(ctx context.Context, h *hostile) (string, string, error) {
	cert, err := selfSigned()
	if err != nil {
		return "", "", err
	}
	sent := "TLS with a self-signed client certificate, then a header and RequestVote{term: 2^64-1}"
	return h.eachRaftPort(ctx, sent, func(addr string) (string, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return "", err
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(2 * time.Second))
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err := c.Handshake(); err != nil {
			return "handshake refused", nil
		}
		c.Write(append(muxHeader(1, "127.0.0.1:1"), ForgedRPCs(1)[0].Bytes...))
		n, err := io.Copy(io.Discard, c)
		switch {
		case isTimeout(err):
			return fmt.Sprintf("open after %d bytes", n), errors.New("the node kept a connection whose certificate no CA signed")
		case n > 0:
			return fmt.Sprintf("answered %d bytes", n), errors.New("the node answered a peer whose certificate no CA signed")
		}
		return "refused after the client's handshake", nil
	})
}

// selfSigned makes a throwaway certificate that claims to be a node.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// sendRaw writes header and body on a new connection and reports how the
// peer answered.
func sendRaw(ctx context.Context, addr string, header, body []byte) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write(append(append([]byte{}, header...), body...)); err != nil {
		return "closed while sending", nil
	}
	n, err := io.Copy(io.Discard, conn)
	switch {
	case err == nil:
		return fmt.Sprintf("closed after %d bytes", n), nil
	case errors.Is(err, net.ErrClosed) || isTimeout(err):
		return fmt.Sprintf("open after %d bytes", n), nil
	default:
		return fmt.Sprintf("reset after %d bytes", n), nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// summarize counts repeated answers.
func summarize(answers []string) string {
	counts := map[string]int{}
	var order []string
	for _, a := range answers {
		if counts[a] == 0 {
			order = append(order, a)
		}
		counts[a]++
	}
	var parts []string
	for _, a := range order {
		parts = append(parts, fmt.Sprintf("%d× %s", counts[a], a))
	}
	return strings.Join(parts, ", ")
}

// absurdMoverTerm posts, to each node's internal endpoint on its Raft
// port, a drop of the whole hash space carrying a mover term no metadata
// leader has had. It must be refused, and must not lock out later ring
// changes (checked by the health check's write, and by the caller's ring
// changes after the suite).
func absurdMoverTerm(ctx context.Context, h *hostile) (string, string, error) {
	sent := "POST /v1/internal/forward on the Raft port: drop of [0, 2^64) in group 1, term 2^62"
	body := mustJSON(map[string]interface{}{"requests": []map[string]interface{}{{"op": "drop", "group": 1,
		"ranges": []map[string]uint64{{"start": 0, "end": 0}}, "limit": 10000, "term": uint64(1) << 62, "deadline_ms": 2000}}})
	var got []string
	for _, c := range h.nodes {
		_, raftAddr, err := ownStatus(ctx, c)
		if err != nil {
			return sent, "", err
		}
		answer, err := peerPost(ctx, raftAddr, "/v1/internal/forward", body)
		if err != nil {
			return sent, answer, err
		}
		if !strings.Contains(answer, `"error"`) || strings.Contains(answer, `"response"`) {
			return sent, answer, fmt.Errorf("%s: the drop was not refused: %s", raftAddr, answer)
		}
		got = append(got, answer)
	}
	return sent, summarize(got), nil
}

// peerPost sends an HTTP POST to a node's internal endpoint on its Raft
// port, as another node would, and returns the answer's body.
func peerPost(ctx context.Context, raftAddr, path string, body []byte) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", raftAddr)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(muxHeader(peerHTTPGroup, "127.0.0.1:1")); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+raftAddr+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)), nil
}

// byteKeyRoundTrip writes a key that is not valid UTF-8 (which a JSON
// string cannot hold) and checks that every node lists it exactly, then
// deletes it.
func byteKeyRoundTrip(ctx context.Context, h *hostile) (string, string, error) {
	key := fmt.Sprintf("hostile/bin/\xff\xfe\x00%d", time.Now().UnixNano())
	sent := fmt.Sprintf("PUT /v1/kv/%s, then a keys list through every node", url.PathEscape(key))
	if _, err := h.nodes[0].Put(ctx, key, []byte("b"), client.PutOptions{}); err != nil {
		return sent, err.Error(), err
	}
	defer h.nodes[0].Delete(ctx, key, client.PutOptions{})
	for _, c := range h.nodes {
		keys, err := c.Keys(ctx, "hostile/bin/", client.ListOptions{})
		if err != nil {
			return sent, err.Error(), fmt.Errorf("%s: %w", c.Addr(), err)
		}
		if !slices.Contains(keys, key) {
			return sent, fmt.Sprintf("%q", keys), fmt.Errorf("%s lists %q, not the key written", c.Addr(), keys)
		}
	}
	return sent, "listed exactly by every node", nil
}
