package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func pool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("ca.crt: no certificate")
	}
	return p
}

func pair(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	crt, key := Files(dir, name)
	c, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// What the three commands write is what a TLS server and client with
// mutual authentication take: the handshake succeeds with the node and
// client certificates, and fails without a client certificate or with one
// from another CA.
func TestCertificatesServeMutualTLS(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := CreateCA(d); err != nil {
			t.Fatal(err)
		}
		if err := CreateNode(d, "node1", []string{"127.0.0.1", "localhost", "ringkv1"}); err != nil {
			t.Fatal(err)
		}
		if err := CreateClient(d, "app"); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "node1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("node1.key: %v, mode %v, want 0600", err, fi.Mode())
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair(t, dir, "node1")}, ClientCAs: pool(t, dir),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	get := func(certs ...tls.Certificate) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, dir), Certificates: certs}}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if cn, err := get(pair(t, dir, "app")); err != nil || cn != "app" {
		t.Fatalf("client certificate: %q, %v", cn, err)
	}
	if cn, err := get(pair(t, dir, "node1")); err != nil || cn != "node1" {
		t.Fatalf("node certificate as a client (node-to-node TLS): %q, %v", cn, err)
	}
	if _, err := get(); err == nil {
		t.Fatal("no client certificate: accepted")
	}
	if _, err := get(pair(t, other, "app")); err == nil {
		t.Fatal("client certificate from another CA: accepted")
	}
}

func TestCertsRefuseWhatTheyShouldNot(t *testing.T) {
	dir := t.TempDir()
	if err := CreateClient(dir, "app"); err == nil {
		t.Fatal("a client certificate without a CA: made")
	}
	if err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err := CreateCA(dir); !errors.Is(err, ErrExists) {
		t.Fatalf("second CA over the first: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if string(before) != string(after) {
		t.Fatal("the CA was replaced")
	}
	if err := CreateNode(dir, "n1", nil); err == nil {
		t.Fatal("a node certificate without hosts: made")
	}
	for _, h := range []string{"bad host", "-x.example", "a..b", ""} {
		if err := CreateNode(dir, "n1", []string{h}); err == nil {
			t.Errorf("host %q: accepted", h)
		}
	}
	for _, name := range []string{"", "ca", "../x", ".hidden", "a/b", "x\x00", string(make([]byte, 65))} {
		if err := CreateClient(dir, name); err == nil {
			t.Errorf("name %q: accepted", name)
		}
	}
	if err := CreateClient(dir, "app"); err != nil {
		t.Fatal(err)
	}
	if err := CreateClient(dir, "app"); !errors.Is(err, ErrExists) {
		t.Fatalf("second app certificate: %v, want ErrExists", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Fatalf("files in dir: %d, want ca.crt, ca.key, app.crt, app.key", len(ents))
	}
}

// A reload that fails (a half-written or wrong file) keeps what was
// served; one that succeeds serves the new certificate.
func TestReloaderKeepsTheLastGoodCertificate(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, "a", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, "b", []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	crt, key := Files(dir, "a")
	r, err := NewReloader(crt, key, filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	first := r.Certificate()
	if r.Changed() {
		t.Fatal("changed before any change")
	}
	if err := os.WriteFile(crt, []byte("-----BEGIN CERT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !r.Changed() {
		t.Fatal("a rewritten file not seen as changed")
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if r.Certificate() != first {
		t.Fatal("a failed reload replaced the certificate")
	}
	bcrt, bkey := Files(dir, "b")
	for from, to := range map[string]string{bcrt: crt, bkey: key} {
		b, _ := os.ReadFile(from)
		os.WriteFile(to, b, 0o600)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(r.Certificate().Certificate[0])
	if err != nil || leaf.Subject.CommonName != "b" {
		t.Fatalf("after reload: %v %v, want b's certificate", leaf.Subject.CommonName, err)
	}
	if _, err := NewReloader(crt, "", ""); err == nil {
		t.Fatal("a certificate without its key accepted")
	}
}
