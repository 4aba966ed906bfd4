package main

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ringkv/ringkv/certs"
	"github.com/ringkv/ringkv/transport"
)

// certCheckInterval is how often certificate files are checked for a
// change (SIGHUP reloads them at once).
const certCheckInterval = 5 * time.Second

// serveTLS wraps the client listener in TLS when --tls-cert is given, and
// reloads the certificate and client CA on SIGHUP and when their files
// change, until stop is closed. Connections opened after a reload use what
// it read; a reload that fails keeps the previous ones and says so.
func serveTLS(ln net.Listener, o options, log *slog.Logger, stop <-chan struct{}) (net.Listener, error) {
	if o.tlsCert == "" && o.tlsKey == "" {
		if o.tlsClientCA != "" {
			return ln, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return ln, nil
	}
	r, err := certs.NewReloader(o.tlsCert, o.tlsKey, o.tlsClientCA)
	if err != nil {
		return ln, err
	}
	watch(r, "client", log, stop)
	log.Info("client port serves TLS", "cert", o.tlsCert, "client_certificates_required", o.tlsClientCA != "")
	return tls.NewListener(ln, r.ServerConfig()), nil
}

// peerTLS reads --peer-cert, --peer-key and --peer-ca when given (all three
// or none), and reloads them on SIGHUP and when their files change, until
// stop is closed: connections between nodes opened after a reload use what
// it read, and open ones go on.
func peerTLS(o options, log *slog.Logger, stop <-chan struct{}) (*transport.PeerTLS, error) {
	if o.peerCert == "" && o.peerKey == "" && o.peerCA == "" {
		return nil, nil
	}
	if o.peerCert == "" || o.peerKey == "" || o.peerCA == "" {
		return nil, errors.New("peer TLS needs --peer-cert, --peer-key and --peer-ca together")
	}
	r, err := certs.NewReloader(o.peerCert, o.peerKey, o.peerCA)
	if err != nil {
		return nil, err
	}
	watch(r, "peer", log, stop)
	log.Info("Raft port serves mutual TLS only", "cert", o.peerCert, "peer_ca", o.peerCA)
	return &transport.PeerTLS{Server: r.PeerServerConfig(), Client: r.PeerClientConfig}, nil
}

// watch reloads r's files on SIGHUP and when they change, until stop is
// closed, and logs each outcome.
func watch(r *certs.Reloader, port string, log *slog.Logger, stop <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		r.Watch(certCheckInterval, hup, stop, func(err error) {
			if err != nil {
				log.Warn("certificates not reloaded; serving the previous ones", "port", port, "err", err)
				return
			}
			log.Info("certificates reloaded", "port", port, "cert", r.CertFile, "ca", r.CAFile)
		})
	}()
}
