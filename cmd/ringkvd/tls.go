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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		r.Watch(certCheckInterval, hup, stop, func(err error) {
			if err != nil {
				log.Warn("certificates not reloaded; serving the previous ones", "err", err)
				return
			}
			log.Info("certificates reloaded", "cert", o.tlsCert, "client_ca", o.tlsClientCA)
		})
	}()
	log.Info("client port serves TLS", "cert", o.tlsCert, "client_certificates_required", o.tlsClientCA != "")
	return tls.NewListener(ln, r.ServerConfig()), nil
}
