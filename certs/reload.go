package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Reloader holds a certificate, its key and optionally a CA bundle, read
// from files, and serves them to TLS connections: Reload reads the files
// again, and connections opened after it use what it read. A reload that
// fails keeps what was there.
type Reloader struct {
	CertFile, KeyFile string
	// CAFile, if set, holds the CAs that client certificates must chain
	// to (a server) or that servers must chain to (a client).
	CAFile string

	mu    sync.RWMutex
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // sizes and mtimes of the files, for Changed
}

// NewReloader reads the files once; it fails if they do not make a
// certificate (and a CA pool, when caFile is set).
func NewReloader(certFile, keyFile, caFile string) (*Reloader, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("certs: a certificate needs its key, and a key its certificate")
	}
	r := &Reloader{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again.
func (r *Reloader) Reload() error {
	stamp := r.stampNow()
	var cert *tls.Certificate
	if r.CertFile != "" {
		c, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
		if err != nil {
			return fmt.Errorf("certs: loading %s and %s: %w", r.CertFile, r.KeyFile, err)
		}
		if c.Leaf != nil && time.Now().After(c.Leaf.NotAfter) {
			return fmt.Errorf("certs: %s expired on %s", r.CertFile, c.Leaf.NotAfter.Format(time.DateOnly))
		}
		cert = &c
	}
	var pool *x509.CertPool
	if r.CAFile != "" {
		b, err := os.ReadFile(r.CAFile)
		if err != nil {
			return fmt.Errorf("certs: reading %s: %w", r.CAFile, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("certs: %s holds no PEM certificate", r.CAFile)
		}
	}
	r.mu.Lock()
	r.cert, r.pool, r.stamp = cert, pool, stamp
	r.mu.Unlock()
	return nil
}

// Changed reports whether any of the files changed (size or modification
// time) since they were last read.
func (r *Reloader) Changed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.stampNow() != r.stamp
}

func (r *Reloader) stampNow() string {
	s := ""
	for _, f := range []string{r.CertFile, r.KeyFile, r.CAFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "missing;"
		}
	}
	return s
}

// Pool returns the CA pool read last (nil without a CA file).
func (r *Reloader) Pool() *x509.CertPool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.pool
}

// Certificate returns the certificate read last.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert
}

// base is the TLS configuration every ringkv endpoint uses: TLS 1.2 at
// least (1.3 is preferred by Go when both ends speak it), and for 1.2
// only forward-secret AEAD suites.
func base() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
		},
	}
}

// ServerConfig is a server configuration that takes the certificate and
// CA pool current at each handshake; with a CA file, clients must present
// a certificate that chains to it.
func (r *Reloader) ServerConfig() *tls.Config {
	cfg := base()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base()
		cert := r.Certificate()
		if cert == nil {
			return nil, errors.New("certs: no server certificate")
		}
		c.Certificates = []tls.Certificate{*cert}
		if pool := r.Pool(); pool != nil {
			c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return cfg
}

// ClientConfig returns a client configuration: servers are verified
// against the CA file as read last (the system's roots without one), and
// the certificate, if any, is presented when a server asks for one (the
// one current at each handshake).
func (r *Reloader) ClientConfig() *tls.Config {
	cfg := base()
	cfg.RootCAs = r.Pool()
	if r.CertFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.Certificate(), nil
		}
	}
	return cfg
}

// Watch reloads the files every interval when they changed, and whenever
// a value arrives on signals (SIGHUP), until stop is closed. Each outcome
// goes to report.
func (r *Reloader) Watch(interval time.Duration, signals <-chan os.Signal, stop <-chan struct{}, report func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-signals:
			report(r.Reload())
		case <-tick.C:
			if r.Changed() {
				report(r.Reload())
			}
		}
	}
}
