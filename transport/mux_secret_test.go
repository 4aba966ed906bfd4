package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
)

func muxSecret(t testing.TB, secret *PeerSecret, groups ...base.GroupID) (*Mux, map[base.GroupID]raft.StreamLayer) {
	t.Helper()
	return muxOf(t, nil, secret, groups...)
}

// waiting is how many connections wait at a layer for its group.
func waiting(l raft.StreamLayer) int { return len(l.(*streamLayer).accept) }

// With a peer secret, nodes that know it talk over the Raft port; a node
// without one, a node with another, a node that has not learned it yet,
// and a forged handshake are refused, and nothing they send reaches a
// group. A secret node dialling one without a secret is refused too.
func TestMuxPeerSecret(t *testing.T) {
	secret := MakePeerSecret()
	b, bl := muxSecret(t, NewPeerSecret(secret), 1, PeerHTTPGroup)
	_, al := muxSecret(t, NewPeerSecret(secret), 1)
	_, cl := muxSecret(t, nil, 1, PeerHTTPGroup)
	_, dl := muxSecret(t, NewPeerSecret(MakePeerSecret()), 1)
	bAddr := raft.ServerAddress(b.Addr().String())

	carries(t, "a dials b, same secret", al[1], bl[1], bAddr)

	refused := func(what string, c net.Conn) {
		t.Helper()
		c.Write([]byte("raft bytes"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.ReadAll(c) // until b closes, or a wedged test gives up
		c.Close()
		if n := waiting(bl[1]); n != 0 {
			t.Fatalf("%s: %d connections reached group 1 of b", what, n)
		}
	}
	pc, err := cl[1].Dial(bAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial without a secret: %v", err)
	}
	refused("a peer without a secret", pc)

	if _, err := dl[1].Dial(bAddr, 5*time.Second); !errors.Is(err, ErrPeerSecret) || !strings.Contains(err.Error(), "does not know") {
		t.Fatalf("a node with another secret dials b: %v, want a refused handshake", err)
	}
	if n := waiting(bl[1]); n != 0 {
		t.Fatalf("a node with another secret: %d connections reached group 1 of b", n)
	}

	// b dials a node without a secret: refused there, and b is told.
	c2, c2l := muxSecret(t, nil, 1)
	if _, err := bl[1].Dial(raft.ServerAddress(c2.Addr().String()), 5*time.Second); !errors.Is(err, ErrPeerSecret) {
		t.Fatalf("b dials a node without a secret: %v, want ErrPeerSecret", err)
	}
	if n := waiting(c2l[1]); n != 0 {
		t.Fatalf("%d connections from b reached a node without a secret", n)
	}

	// A node that has not learned the secret yet refuses and cannot dial.
	j, jl := muxSecret(t, NewPeerSecret(nil), 1)
	if _, err := jl[1].Dial(bAddr, 5*time.Second); !errors.Is(err, ErrPeerSecret) {
		t.Fatalf("a node without its secret yet dials: %v, want ErrPeerSecret", err)
	}
	if _, err := al[1].Dial(raft.ServerAddress(j.Addr().String()), 5*time.Second); !errors.Is(err, ErrPeerSecret) {
		t.Fatalf("dialling a node without its secret yet: %v, want ErrPeerSecret", err)
	}
	if n := waiting(jl[1]); n != 0 {
		t.Fatalf("%d connections reached a node without its secret yet", n)
	}

	// A forged handshake: a right header, then a made-up proof.
	raw, err := net.Dial("tcp", string(bAddr))
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(append(secretHeader(1, "127.0.0.1:1"), newNonce()...))
	reply := make([]byte, 1+nonceBytes+macBytes)
	if _, err := io.ReadFull(raw, reply); err != nil || reply[0] != secretReplyMagic {
		t.Fatalf("b's handshake reply: %q, %v", reply, err)
	}
	raw.Write(bytes.Repeat([]byte{1}, macBytes))
	refused("a forged proof", raw)

	// Node-to-node HTTP without the secret is told why, as a join's probe
	// of a node without --acl is.
	hc, err := cl[PeerHTTPGroup].Dial(bAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Dial: func(string, string) (net.Conn, error) { return hc, nil }}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + string(bAddr) + "/v1/internal/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "peer secret") {
		t.Fatalf("node-to-node HTTP without the secret: %d %s", resp.StatusCode, body)
	}
	if n := waiting(bl[PeerHTTPGroup]); n != 0 {
		t.Fatalf("%d connections reached b's node-to-node HTTP", n)
	}
}

func secretHeader(g base.GroupID, self string) []byte {
	hdr := []byte{muxMagic, muxVersionSecret, 0, 0, 0, 0, byte(len(self))}
	binary.BigEndian.PutUint32(hdr[2:6], uint32(g))
	return append(hdr, self...)
}

// The secret is made once by the node that bootstraps, kept readable by
// its owner only, read back as it was written, and refused when damaged.
func TestPeerSecretFile(t *testing.T) {
	dir := t.TempDir()
	if s, err := ReadPeerSecret(dir); s != nil || err != nil {
		t.Fatalf("no file: %x, %v", s, err)
	}
	secret := MakePeerSecret()
	if err := WritePeerSecret(dir, secret); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, PeerSecretFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the secret's file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if got, err := ReadPeerSecret(dir); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read back %x, %v; want %x", got, err, secret)
	}
	os.WriteFile(filepath.Join(dir, PeerSecretFile), []byte("abc\n"), 0o600)
	if _, err := ReadPeerSecret(dir); err == nil {
		t.Fatal("a damaged secret file was accepted")
	}
}

// FuzzPeerSecretHandshake sends arbitrary bytes after a version 2 header
// to a port that requires the secret: nothing reaches the group, and
// nothing panics.
func FuzzPeerSecretHandshake(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, nonceBytes+macBytes))
	f.Add(bytes.Repeat([]byte{0xff}, 200))
	m, layers := muxSecret(f, NewPeerSecret(MakePeerSecret()), 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := net.Dial("tcp", m.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(append(secretHeader(1, "127.0.0.1:1"), b...))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		if n := waiting(layers[1]); n != 0 {
			t.Fatalf("%d connections with a forged handshake reached the group", n)
		}
	})
}
