// Package certs makes the certificates a ringkv cluster with TLS needs: a
// certificate authority, node certificates (for the client port and for
// node-to-node TLS) and client certificates, as PEM files in one
// directory: DIR/ca.crt and DIR/ca.key, DIR/NAME.crt and DIR/NAME.key.
//
// Keys are ECDSA P-256. The CA is valid for ten years, node and client
// certificates for two; a file that exists is never overwritten (a new CA
// over an old one would leave every node's certificate unverifiable).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of what this package makes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 2 * 365 * 24 * time.Hour
)

// ErrExists is returned when a file to be written is already there.
var ErrExists = errors.New("certs: file exists")

// Files names the certificate and key files of NAME in dir.
func Files(dir, name string) (crt, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// CAName is the base name of the CA's files.
const CAName = "ca"

// CreateCA writes a new certificate authority to dir/ca.crt and dir/ca.key.
func CreateCA(dir string) error {
	crt, key := Files(dir, CAName)
	if err := absent(crt, key); err != nil {
		return err
	}
	return issue(dir, crt, key, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "ringkv CA", Organization: []string{"ringkv"}},
		NotAfter:              time.Now().Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
}

// issue makes a key and a certificate of tmpl for it, signed by parent
// and parentKey (self-signed when parent is nil), and writes both.
func issue(dir, crt, key string, tmpl, parent *x509.Certificate, parentKey any) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		return err
	}
	return write(dir, crt, key, der, k)
}

// CreateNode writes dir/NAME.crt and dir/NAME.key, signed by the CA in
// dir, for a node answering at hosts (IP addresses and DNS names). It
// serves TLS and authenticates as a client, for node-to-node TLS.
func CreateNode(dir, name string, hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("certs: a node certificate needs --hosts (the addresses and names clients and peers dial)")
	}
	var ips []net.IP
	var dns []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return errors.New("certs: an empty host in --hosts")
		case net.ParseIP(h) != nil:
			ips = append(ips, net.ParseIP(h))
		case validDNS(h):
			dns = append(dns, h)
		default:
			return fmt.Errorf("certs: %q is neither an IP address nor a DNS name", h)
		}
	}
	return createLeaf(dir, name, func(c *x509.Certificate) {
		c.IPAddresses, c.DNSNames = ips, dns
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

// CreateClient writes dir/NAME.crt and dir/NAME.key, signed by the CA in
// dir, for a client that authenticates with the common name NAME.
func CreateClient(dir, name string) error {
	return createLeaf(dir, name, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func createLeaf(dir, name string, shape func(*x509.Certificate)) error {
	if err := checkName(name); err != nil {
		return err
	}
	crt, key := Files(dir, name)
	if err := absent(crt, key); err != nil {
		return err
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:  pkix.Name{CommonName: name, Organization: []string{"ringkv"}},
		NotAfter: minTime(time.Now().Add(LeafValidity), ca.NotAfter),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	shape(tmpl)
	return issue(dir, crt, key, tmpl, ca, caKey)
}

// loadCA reads dir/ca.crt and dir/ca.key.
func loadCA(dir string) (*x509.Certificate, any, error) {
	crtPath, keyPath := Files(dir, CAName)
	crtPEM, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: reading the CA (make one with `ringkv certs create-ca --dir %s`): %w", dir, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: reading the CA key: %w", err)
	}
	b, _ := pem.Decode(crtPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("certs: %s holds no PEM certificate", crtPath)
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", crtPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("certs: %s is not a CA certificate", crtPath)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("certs: %s holds no PEM key", keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", keyPath, err)
	}
	return ca, key, nil
}

// write writes the certificate (0644) and its key (0600, PKCS #8), each
// through a temporary file renamed into place.
func write(dir, crtPath, keyPath string, der []byte, k *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func absent(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%w: %s (remove it first to replace it)", ErrExists, p)
		}
	}
	return nil
}

// checkName allows what a file name and a node id may both hold.
func checkName(name string) error {
	if name == "" || len(name) > 64 || name == CAName || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("certs: name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -, and not %q", name, CAName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("certs: name %q: want 1 to 64 of A-Z a-z 0-9 . _ -, not starting with . or -, and not %q", name, CAName)
		}
	}
	return nil
}

func validDNS(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimPrefix(h, "*."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
