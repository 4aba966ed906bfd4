package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft port is shared by every group of a node. Each connection opens
// with a header naming the group it serves and the dialling node's Raft
// address:
//
//	'R' 1 group:uint32 len:uint8 addr:[len]byte
const (
	muxMagic   = 'R'
	muxVersion = 1
)

// peerHTTPGroup is the mux header's group number for node-to-node HTTP
// (forwarded requests, checkpoints, restores); no Raft group has it.
const peerHTTPGroup GroupID = 1<<32 - 2

var errMuxClosed = errors.New("raft mux closed")

// Mux multiplexes the Raft traffic of every group over one listener. It
// also carries the fault hook that tests and the chaos harness use to cut a
// node off from chosen peers.
type Mux struct {
	ln   net.Listener
	self string // advertised raft address, sent in every header
	log  *slog.Logger

	mu      sync.Mutex
	layers  map[GroupID]*streamLayer
	blocked map[string]bool     // raft addresses cut off
	conns   map[net.Conn]string // open connections and their peer address
	closed  bool
}

// NewMux listens on addr. self is the address peers know this node by.
func NewMux(addr, self string, log *slog.Logger) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	if self == "" {
		self = ln.Addr().String()
	}
	m := &Mux{ln: ln, self: self, log: log, layers: map[GroupID]*streamLayer{},
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
	m.layers = map[GroupID]*streamLayer{}
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

func (m *Mux) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [7]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != muxMagic || hdr[1] != muxVersion {
		c.Close()
		return
	}
	group := GroupID(binary.BigEndian.Uint32(hdr[2:6]))
	peer := make([]byte, hdr[6])
	if _, err := io.ReadFull(c, peer); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
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
func (m *Mux) Layer(g GroupID) (raft.StreamLayer, error) {
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
	group  GroupID
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
	l.m.mu.Unlock()
	if cut {
		return nil, fmt.Errorf("raft mux: %s is cut off by the fault hook", peer)
	}
	c, err := net.DialTimeout("tcp", peer, timeout)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, 7, 7+len(l.m.self))
	hdr[0], hdr[1] = muxMagic, muxVersion
	binary.BigEndian.PutUint32(hdr[2:6], uint32(l.group))
	hdr[6] = byte(len(l.m.self))
	hdr = append(hdr, l.m.self...)
	if _, err := c.Write(hdr); err != nil {
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
