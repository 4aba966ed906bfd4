package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/base"
)

// A cluster with access control and without peer TLS authenticates the
// connections between its nodes with a peer secret: 32 random bytes made
// by the node that bootstraps the cluster, handed to a joining node (GET
// /v1/cluster/peer-secret, which needs operator write), and kept in each
// node's data dir. A connection to the Raft port proves the secret before
// anything it sends reaches a group, the forwarding path or the internal
// endpoints, so a client that reaches the Raft port cannot bypass access
// control. The secret does not encrypt: on a network where someone may
// listen, use peer TLS, which makes the secret unneeded.
//
// The handshake, after a version 2 mux header (see mux.go):
//
//	dialler:  'R' 2 group:uint32 len:uint8 addr:[len]byte nonceD:[32]byte
//	acceptor: 'S' nonceA:[32]byte HMAC(secret, "ringkv peer acceptor" 0 nonceD nonceA)
//	dialler:  HMAC(secret, "ringkv peer dialler" 0 nonceA nonceD group addr)
//
// Each side proves it knows the secret on the other's fresh nonce, so a
// recorded handshake cannot be replayed on a new connection.
const (
	muxVersionSecret = 2
	secretReplyMagic = 'S'
	peerSecretBytes  = 32
	nonceBytes       = 32
	macBytes         = sha256.Size
)

// PeerSecretFile, in the data dir, holds the node's peer secret in hex.
const PeerSecretFile = "peer-secret"

// PeerSecret is a node's peer secret, which a joining node learns after
// it starts. A Mux given a PeerSecret requires the handshake on every
// connection; until the secret is known it refuses every connection.
type PeerSecret struct {
	v atomic.Pointer[[]byte]
}

// NewPeerSecret returns a PeerSecret holding b (nil: not known yet).
func NewPeerSecret(b []byte) *PeerSecret {
	s := &PeerSecret{}
	if b != nil {
		s.Set(b)
	}
	return s
}

// Set records the secret.
func (s *PeerSecret) Set(b []byte) { c := append([]byte(nil), b...); s.v.Store(&c) }

// Get returns the secret, or nil when it is not known yet.
func (s *PeerSecret) Get() []byte {
	if p := s.v.Load(); p != nil {
		return *p
	}
	return nil
}

// MakePeerSecret makes a secret.
func MakePeerSecret() []byte {
	b := make([]byte, peerSecretBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func newNonce() []byte {
	b := make([]byte, nonceBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// ParsePeerSecret decodes a secret as the peer-secret route and file hold
// it: 64 hex digits.
func ParsePeerSecret(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != peerSecretBytes {
		return nil, fmt.Errorf("a peer secret is %d hex digits", 2*peerSecretBytes)
	}
	return b, nil
}

// ReadPeerSecret reads the data dir's secret; nil, nil when there is none.
func ReadPeerSecret(dataDir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, PeerSecretFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := ParsePeerSecret(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dataDir, PeerSecretFile), err)
	}
	return s, nil
}

// WritePeerSecret stores a secret in the data dir, readable by its owner
// only, replacing the file atomically.
func WritePeerSecret(dataDir string, secret []byte) error {
	path := filepath.Join(dataDir, PeerSecretFile)
	if err := os.WriteFile(path+".tmp", []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func macOf(secret []byte, label string, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	h.Write([]byte{0})
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

func groupBytes(g base.GroupID) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(g))
	return b[:]
}

// ErrPeerSecret is a failed peer secret handshake.
var ErrPeerSecret = errors.New("peer secret handshake failed")

// dialSecret runs the dialler's side of the handshake on c, after its
// version 2 header: hdr is that header, whose last nonceBytes are nonceD.
func dialSecret(c net.Conn, secret []byte, hdr []byte, group base.GroupID, self string, peer string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(hdr); err != nil {
		return err
	}
	nonceD := hdr[len(hdr)-nonceBytes:]
	var reply [1 + nonceBytes + macBytes]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil || reply[0] != secretReplyMagic {
		return fmt.Errorf("%w: %s did not answer it (does it run with --acl, without peer TLS, and know this cluster's peer secret?)", ErrPeerSecret, peer)
	}
	nonceA := reply[1 : 1+nonceBytes]
	if !hmac.Equal(reply[1+nonceBytes:], macOf(secret, "ringkv peer acceptor", nonceD, nonceA)) {
		return fmt.Errorf("%w: %s does not know this cluster's peer secret", ErrPeerSecret, peer)
	}
	_, err := c.Write(macOf(secret, "ringkv peer dialler", nonceA, nonceD, groupBytes(group), []byte(self)))
	return err
}

// acceptSecret runs the acceptor's side on c, whose header (group, the
// dialler's address) has been read; nonceD follows it on r.
func acceptSecret(c net.Conn, r io.Reader, secret []byte, group base.GroupID, addr []byte) error {
	var nonceD [nonceBytes]byte
	if _, err := io.ReadFull(r, nonceD[:]); err != nil {
		return err
	}
	nonceA := newNonce()
	reply := append([]byte{secretReplyMagic}, nonceA...)
	reply = append(reply, macOf(secret, "ringkv peer acceptor", nonceD[:], nonceA)...)
	if _, err := c.Write(reply); err != nil {
		return err
	}
	var mac [macBytes]byte
	if _, err := io.ReadFull(r, mac[:]); err != nil {
		return err
	}
	if !hmac.Equal(mac[:], macOf(secret, "ringkv peer dialler", nonceA, nonceD[:], groupBytes(group), addr)) {
		return ErrPeerSecret
	}
	return nil
}
