package transport

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
)

// The Raft port is shared by every group of a node. Each connection opens
// with a header naming the group it serves and the dialling node's Raft
// address:
//
//	'R' 1 group:uint32 len:uint8 addr:[len]byte
//
// A node with a peer secret (access control on, no peer TLS) sends and
// requires version 2, the header followed by the handshake in
// peersecret.go. With peer TLS the connection is TLS from its first byte,
// both ends presenting node certificates of the peer CA, and the header
// follows the handshake: nothing a peer sends reaches a group before it
// is authenticated.
const (
	muxMagic   = 'R'
	muxVersion = 1
)

// PeerHTTPGroup is the mux header's group number for node-to-node HTTP
// (forwarded requests, checkpoints, restores); no Raft group has it.
const PeerHTTPGroup base.GroupID = 1<<32 - 2

// PeerTLS holds the TLS configurations of the Raft port.
type PeerTLS struct {
	// Server serves connections peers open; it must require and verify
	// their certificates.
	Server *tls.Config
	// Client returns the configuration of a connection to the node at
	// addr. It is called at each dial, so that reloaded certificates
	// apply to connections opened after the reload.
	Client func(addr string) *tls.Config
}

var errMuxClosed = errors.New("raft mux closed")

// Mux multiplexes the Raft traffic of every group over one listener. It
// also carries the fault hook that tests and the chaos harness use to cut a
// node off from chosen peers.
type Mux struct {
	ln   net.Listener
	self string // advertised raft address, sent in every header
	tls  *PeerTLS
	// secret, when set, is required of every connection (peersecret.go).
	secret *PeerSecret
	log    *slog.Logger

	mu      sync.Mutex
	layers  map[base.GroupID]*streamLayer
	blocked map[string]bool // raft addresses cut off
	// via reroutes dials: a peer's Raft address to the address to dial
	// instead (a link emulating the network between the two nodes).
	via    map[string]string
	conns  map[net.Conn]string // open connections and their peer address
	closed bool
}

// NewMux listens on addr. self is the address peers know this node by.
// With peerTLS every connection, accepted or dialled, is TLS; with secret
// (and no peerTLS) every connection proves the peer secret.
func NewMux(addr, self string, peerTLS *PeerTLS, secret *PeerSecret, log *slog.Logger) (*Mux, error) {
	if peerTLS != nil && secret != nil {
		return nil, errors.New("raft mux: peer TLS and a peer secret are exclusive")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	if self == "" {
		self = ln.Addr().String()
	}
	m := &Mux{ln: ln, self: self, tls: peerTLS, secret: secret, log: log, layers: map[base.GroupID]*streamLayer{},
		blocked: map[string]bool{}, conns: map[net.Conn]string{}}
	go m.serve()
	return m, nil
}

// Addr returns the listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Close stops the listener and every layer.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	layers := m.layers
	m.layers = map[base.GroupID]*streamLayer{}
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	for _, l := range layers {
		l.Close()
	}
	return m.ln.Close()
}

// Block cuts this node off from the peers with the given Raft addresses, in
// both directions: open connections are closed, new ones refused. Block(nil)
// heals.
func (m *Mux) Block(addrs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blocked = map[string]bool{}
	for _, a := range addrs {
		m.blocked[a] = true
	}
	for c, peer := range m.conns {
		if m.blocked[peer] {
			c.Close()
			delete(m.conns, c)
		}
	}
}

// Route makes this node dial each peer address in via at the address it
// maps to instead, for emulated links between pairs of nodes (the peer
// still knows this node by its own address); open connections to a peer
// whose route changed are closed. Route(nil) dials every peer directly.
func (m *Mux) Route(via map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.via
	m.via = map[string]string{}
	for k, v := range via {
		m.via[k] = v
	}
	for c, peer := range m.conns {
		if old[peer] != m.via[peer] {
			c.Close()
			delete(m.conns, c)
		}
	}
}

func (m *Mux) track(c net.Conn, peer string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.blocked[peer] {
		return false
	}
	m.conns[c] = peer
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *Mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go m.route(c)
	}
}

// muxHandshakeTimeout bounds a connection's TLS handshake and header.
const muxHandshakeTimeout = 5 * time.Second

func (m *Mux) route(c net.Conn) {
	c.SetDeadline(time.Now().Add(muxHandshakeTimeout))
	if m.tls != nil {
		var ok bool
		if c, ok = m.handshake(c); !ok {
			return
		}
	}
	var hdr [7]byte
	_, err := io.ReadFull(c, hdr[:])
	if err != nil || hdr[0] != muxMagic || (hdr[1] != muxVersion && hdr[1] != muxVersionSecret) {
		if err == nil && m.tls == nil && hdr[0] == tlsHandshakeRecord {
			m.log.Warn("a peer spoke TLS to this node's Raft port, which runs without peer TLS; refused (give every node --peer-cert, --peer-key and --peer-ca, or none)",
				"remote", c.RemoteAddr().String())
		}
		c.Close()
		return
	}
	group := base.GroupID(binary.BigEndian.Uint32(hdr[2:6]))
	peer := make([]byte, hdr[6])
	if _, err := io.ReadFull(c, peer); err != nil {
		c.Close()
		return
	}
	if !m.checkSecret(c, hdr[1], group, peer) {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	m.mu.Lock()
	l := m.layers[group]
	m.mu.Unlock()
	if l == nil || !m.track(c, string(peer)) {
		c.Close()
		return
	}
	tc := &trackedConn{Conn: c, m: m}
	select {
	case l.accept <- tc:
	case <-l.done:
		tc.Close()
	}
}

// Layer returns the raft.StreamLayer of one group. Closing it detaches the
// group from the mux.
func (m *Mux) Layer(g base.GroupID) (raft.StreamLayer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errMuxClosed
	}
	if _, ok := m.layers[g]; ok {
		return nil, fmt.Errorf("raft mux: group %d already attached", g)
	}
	l := &streamLayer{m: m, group: g, accept: make(chan net.Conn, 16), done: make(chan struct{})}
	m.layers[g] = l
	return l, nil
}

type trackedConn struct {
	net.Conn
	m    *Mux
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() { t.m.untrack(t.Conn) })
	return t.Conn.Close()
}

type streamLayer struct {
	m      *Mux
	group  base.GroupID
	accept chan net.Conn
	done   chan struct{}
	once   sync.Once
}

func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, errMuxClosed
	}
}

func (l *streamLayer) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		if l.m.layers[l.group] == l {
			delete(l.m.layers, l.group)
		}
		l.m.mu.Unlock()
	})
	return nil
}

func (l *streamLayer) Addr() net.Addr { return advertisedAddr(l.m.self) }

func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	peer := string(address)
	l.m.mu.Lock()
	cut := l.m.blocked[peer]
	target := peer
	if v, ok := l.m.via[peer]; ok {
		target = v
	}
	l.m.mu.Unlock()
	if cut {
		return nil, fmt.Errorf("raft mux: %s is cut off by the fault hook", peer)
	}
	c, err := net.DialTimeout("tcp", target, timeout)
	if err != nil {
		return nil, err
	}
	if l.m.tls != nil {
		if c, err = l.m.dialTLS(c, peer, timeout); err != nil {
			return nil, err
		}
	}
	hdr := make([]byte, 7, 7+len(l.m.self)+nonceBytes)
	hdr[0], hdr[1] = muxMagic, muxVersion
	binary.BigEndian.PutUint32(hdr[2:6], uint32(l.group))
	hdr[6] = byte(len(l.m.self))
	hdr = append(hdr, l.m.self...)
	if l.m.secret != nil {
		key := l.m.secret.Get()
		if key == nil {
			c.Close()
			return nil, fmt.Errorf("%w: this node does not know its cluster's peer secret yet", ErrPeerSecret)
		}
		hdr[1] = muxVersionSecret
		hdr = append(hdr, newNonce()...)
		if err := dialSecret(c, key, hdr, l.group, l.m.self, peer, timeout); err != nil {
			c.Close()
			return nil, err
		}
	} else if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, err
	}
	if !l.m.track(c, peer) {
		c.Close()
		return nil, fmt.Errorf("raft mux: %s is cut off by the fault hook", peer)
	}
	return &trackedConn{Conn: c, m: l.m}, nil
}

type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// tlsHandshakeRecord is the first byte of a TLS connection (a handshake
// record), which no ringkv header starts with.
const tlsHandshakeRecord = 0x16

// handshake runs the server side of peer TLS on an accepted connection.
// A refused peer is logged and its connection closed; a plaintext ringkv
// header gets, on the node-to-node HTTP group, an HTTP answer saying why,
// so that a node joining without peer TLS is told.
func (m *Mux) handshake(raw net.Conn) (net.Conn, bool) {
	br := bufio.NewReaderSize(raw, 16)
	first, err := br.Peek(1)
	if err != nil {
		raw.Close()
		return nil, false
	}
	if first[0] == muxMagic {
		m.log.Warn("a peer spoke without TLS to this node's Raft port, which requires peer TLS; refused",
			"remote", raw.RemoteAddr().String())
		var hdr [7]byte
		if _, err := io.ReadFull(br, hdr[:]); err == nil && base.GroupID(binary.BigEndian.Uint32(hdr[2:6])) == PeerHTTPGroup {
			if _, err := io.CopyN(io.Discard, br, int64(hdr[6])); err == nil {
				refuseHTTP(raw, br, "the node at this Raft address requires peer TLS: a node joins its cluster only with --peer-cert, --peer-key and --peer-ca of the cluster's peer CA")
			}
		}
		raw.Close()
		return nil, false
	}
	c := tls.Server(&bufferedConn{Conn: raw, r: br}, m.tls.Server)
	if err := c.Handshake(); err != nil {
		m.log.Warn("peer TLS handshake refused", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return nil, false
	}
	return c, true
}

// refuseHTTP answers, with a 403 saying why, the node-to-node HTTP
// request that follows a refused header on r, once its head has arrived
// (an HTTP client drops an answer that comes before its request), reading
// a bounded amount within the connection's deadline.
func refuseHTTP(raw net.Conn, r io.Reader, why string) {
	rest := bufio.NewReader(io.LimitReader(r, 64<<10))
	req, err := http.ReadRequest(rest)
	if err != nil {
		return
	}
	req.Body.Close()
	body, _ := json.Marshal(base.WireError{Code: base.CodeConflict, Error: why})
	fmt.Fprintf(raw, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, rest)
}

// checkSecret decides, after a connection's header (its version, group
// and the dialler's address), whether it may go on: with a peer secret,
// only a version 2 header whose handshake proves the secret does; without
// one, a version 2 header is refused (its cluster has access control on,
// and this node does not).
func (m *Mux) checkSecret(c net.Conn, version byte, group base.GroupID, peer []byte) bool {
	if m.secret == nil {
		if version == muxVersionSecret {
			m.log.Warn("a peer offered the peer secret handshake: its cluster has access control on (--acl) and no peer TLS, and this node does not; refused (start this node with --acl)",
				"remote", c.RemoteAddr().String())
			return false
		}
		return true
	}
	if version != muxVersionSecret {
		m.log.Warn("a peer without this cluster's peer secret spoke to the Raft port; refused (access control is on: a node learns the secret when it joins with --acl and a --token allowing operator write)",
			"remote", c.RemoteAddr().String())
		if group == PeerHTTPGroup {
			refuseHTTP(c, c, "the node at this Raft address requires its cluster's peer secret: its cluster has access control on; a node joins it only with --acl and a --token allowing operator write")
		}
		return false
	}
	key := m.secret.Get()
	if key == nil {
		m.log.Debug("refused a peer before this node knows its cluster's peer secret", "remote", c.RemoteAddr().String())
		return false
	}
	if err := acceptSecret(c, c, key, group, peer); err != nil {
		m.log.Warn("peer secret handshake refused", "remote", c.RemoteAddr().String(), "err", err)
		return false
	}
	return true
}

// dialTLS runs the client side of peer TLS on a dialled connection.
func (m *Mux) dialTLS(raw net.Conn, peer string, timeout time.Duration) (net.Conn, error) {
	c := tls.Client(raw, m.tls.Client(peer))
	raw.SetDeadline(time.Now().Add(timeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, &PeerTLSError{Peer: peer, Err: err}
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// PeerTLSError is a failed peer TLS handshake with the node at Peer: it
// has no peer TLS, or a certificate this node does not trust, or does not
// trust this node's.
type PeerTLSError struct {
	Peer string
	Err  error
}

func (e *PeerTLSError) Error() string {
	return fmt.Sprintf("peer TLS handshake with %s: %v (does it run with --peer-cert, --peer-key and --peer-ca of this cluster's peer CA?)", e.Peer, e.Err)
}

func (e *PeerTLSError) Unwrap() error { return e.Err }

// bufferedConn is a connection whose first bytes were peeked.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
