package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

// createExpiredNode writes a node certificate of dir's CA that expired
// half an hour ago, otherwise as CreateNode makes one.
func createExpiredNode(t *testing.T, dir, name string) {
	t.Helper()
	err := createLeaf(dir, name, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		c.NotAfter = time.Now().Add(-30 * time.Minute)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An expired certificate of the right CA is refused: a node does not
// start with one (nor reload one), and one presented anyway is refused by
// a peer's Raft port, by a client port that requires client
// certificates, and by a node dialling a peer that serves it.
func TestExpiredCertificatesAreRefused(t *testing.T) {
	ca := mustCA(t, "node1")
	createExpiredNode(t, ca, "old")
	crt, key := Files(ca, "old")
	caFile, _ := Files(ca, "ca")
	if _, err := NewReloader(crt, key, caFile); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("loading an expired certificate: %v, want refused as expired", err)
	}
	addr := "127.0.0.1:7071"
	good := peerReloader(t, ca, "node1", ca)
	expired := pair(t, ca, "old")
	client := &tls.Config{Certificates: []tls.Certificate{expired}, RootCAs: pool(t, ca), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	server := &tls.Config{Certificates: []tls.Certificate{expired}, ClientCAs: pool(t, ca), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}

	if srvErr, _ := handshake(t, good.PeerServerConfig(), client); srvErr == nil || !strings.Contains(srvErr.Error(), "expired") {
		t.Fatalf("an expired node certificate dialling the Raft port: server %v, want expired", srvErr)
	}
	if _, cliErr := handshake(t, server, good.PeerClientConfig(addr)); cliErr == nil || !strings.Contains(cliErr.Error(), "expired") {
		t.Fatalf("dialling a node serving an expired certificate: client %v, want expired", cliErr)
	}
	if srvErr, _ := handshake(t, good.ServerConfig(), client); srvErr == nil || !strings.Contains(srvErr.Error(), "expired") {
		t.Fatalf("an expired client certificate on the client port: server %v, want expired", srvErr)
	}
	// The control: the valid certificate in the same places gets in.
	valid := client.Clone()
	valid.Certificates = []tls.Certificate{pair(t, ca, "node1")}
	if srvErr, cliErr := handshake(t, good.ServerConfig(), valid); cliErr != nil || srvErr != nil && !strings.Contains(srvErr.Error(), "EOF") {
		t.Fatalf("a valid certificate on the client port: server %v, client %v", srvErr, cliErr)
	}
}
