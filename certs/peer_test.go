package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T, nodes ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := CreateNode(dir, n, []string{"127.0.0.1", "localhost"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := CreateClient(dir, "app"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func peerReloader(t *testing.T, dir, name, caDir string) *Reloader {
	t.Helper()
	crt, key := Files(dir, name)
	ca, _ := Files(caDir, "ca")
	r, err := NewReloader(crt, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// handshake runs one TLS handshake over loopback between a server and a
// client, returning each side's error.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 sends the client's certificate after the client's
			// handshake returns: read to see the server's verdict.
			var b [1]byte
			_, err = tc.Read(b[:])
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client)
	cliErr = tc.Handshake()
	if cliErr == nil {
		_, cliErr = tc.Write([]byte("x"))
		if cliErr == nil {
			var b [1]byte
			tc.Read(b[:]) // the server's alert, if it refused
		}
	}
	c.Close()
	return <-done, cliErr
}

// Nodes of one CA authenticate each other; a client certificate of the
// same CA, a node of another CA, and a node certificate for other hosts
// are refused.
func TestPeerTLSAcceptsNodesOfItsCAOnly(t *testing.T) {
	ca := mustCA(t, "node1", "node2")
	other := mustCA(t, "node1")
	srv := peerReloader(t, ca, "node1", ca)
	addr := "127.0.0.1:7071"

	srvErr, cliErr := handshake(t, srv.PeerServerConfig(), peerReloader(t, ca, "node2", ca).PeerClientConfig(addr))
	if srvErr != nil && !strings.Contains(srvErr.Error(), "EOF") || cliErr != nil {
		t.Fatalf("node2 to node1, one CA: server %v, client %v; want both to succeed", srvErr, cliErr)
	}

	srvErr, _ = handshake(t, srv.PeerServerConfig(), peerReloader(t, ca, "app", ca).PeerClientConfig(addr))
	if !errors.Is(srvErr, ErrNotANode) {
		t.Fatalf("a client certificate of the peer CA on the Raft port: server %v, want ErrNotANode", srvErr)
	}

	srvErr, _ = handshake(t, srv.PeerServerConfig(), peerReloader(t, other, "node1", other).PeerClientConfig(addr))
	if srvErr == nil || !strings.Contains(srvErr.Error(), "certificate") {
		t.Fatalf("a node of another CA: server %v, want a certificate error", srvErr)
	}

	_, cliErr = handshake(t, srv.PeerServerConfig(), peerReloader(t, ca, "node2", ca).PeerClientConfig("ringkv9:7071"))
	if cliErr == nil || !strings.Contains(cliErr.Error(), "ringkv9") {
		t.Fatalf("dialling ringkv9 and meeting node1's certificate: client %v, want a name mismatch", cliErr)
	}

	// A node whose CA file is another CA's does not trust node1.
	_, cliErr = handshake(t, srv.PeerServerConfig(), peerReloader(t, ca, "node2", other).PeerClientConfig(addr))
	if cliErr == nil || !strings.Contains(cliErr.Error(), "unknown authority") {
		t.Fatalf("a client trusting another CA: %v, want unknown authority", cliErr)
	}
}
