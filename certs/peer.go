package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
)

// Between nodes both ends authenticate: each presents a node certificate
// (CreateNode: server and client authentication) signed by the peer CA, and
// verifies the other's. A client certificate (CreateClient) signed by the
// same CA is refused, so that one CA can serve clients and nodes without a
// client being able to speak Raft.

// ErrNotANode is returned when a peer presents a certificate that is not a
// node certificate.
var ErrNotANode = errors.New("certs: the peer's certificate is not a node certificate (it lacks server authentication)")

// PeerServerConfig is the configuration of a node's Raft port: the node's
// certificate and the peer CA as read last, a node certificate required of
// every peer.
func (r *Reloader) PeerServerConfig() *tls.Config {
	cfg := base()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base()
		cert, pool := r.Certificate(), r.Pool()
		if cert == nil || pool == nil {
			return nil, errors.New("certs: peer TLS needs a certificate and a CA")
		}
		c.Certificates = []tls.Certificate{*cert}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
		c.VerifyConnection = requireNode
		return c, nil
	}
	return cfg
}

// PeerClientConfig is the configuration of a connection to the node at
// addr (host:port): the node's certificate and the peer CA as read last;
// the peer must present a node certificate for addr's host.
func (r *Reloader) PeerClientConfig(addr string) *tls.Config {
	cfg := base()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cfg.ServerName = host
	cfg.RootCAs = r.Pool()
	cert := r.Certificate()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	cfg.VerifyConnection = requireNode
	return cfg
}

// requireNode refuses a verified peer whose certificate is not for
// server authentication, i.e. not a node's.
func requireNode(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: the peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("%w: %q", ErrNotANode, leaf.Subject.CommonName)
	}
	return nil
}
