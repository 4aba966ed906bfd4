package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func mustRingkv(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin.ringkv, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ringkv %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// httpsClient trusts the CA bundle at caFile and presents NAME's
// certificate from dir, if name is not empty.
func httpsClient(t *testing.T, caFile, dir, name string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{RootCAs: pool}
	if name != "" {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// TestClientPortServesTLS starts a real node with certificates made by
// `ringkv certs`: the CLI writes and reads over HTTPS with a client
// certificate; a client without one, with one from another CA, or
// speaking plain HTTP is refused; and after the node's certificate and
// client CA are replaced and SIGHUP sent, clients of the new CA get in
// without a restart.
func TestClientPortServesTLS(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		mustRingkv(t, "certs", "create-ca", "--dir", d)
		mustRingkv(t, "certs", "create-node", "node1", "--hosts", "127.0.0.1,localhost", "--dir", d)
		mustRingkv(t, "certs", "create-client", "app", "--dir", d)
	}
	// The node serves copies, so that they can be replaced under it.
	serve := t.TempDir()
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".tmp", to); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"node1.crt", "node1.key", "ca.crt"} {
		copyFile(filepath.Join(dir, f), filepath.Join(serve, f))
	}

	httpAddr := freePort(t)
	cmd, logPath := startRingkvd(t, "--id", "node1", "--http-addr", httpAddr, "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(t.TempDir(), "data"), "--groups", "2",
		"--tls-cert", filepath.Join(serve, "node1.crt"), "--tls-key", filepath.Join(serve, "node1.key"),
		"--tls-client-ca", filepath.Join(serve, "ca.crt"))

	url := "https://" + httpAddr
	app := httpsClient(t, filepath.Join(dir, "ca.crt"), dir, "app")
	eventually(t, "node ready over HTTPS", 60*time.Second, func() error {
		resp, err := app.Get(url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})

	tlsArgs := []string{"--addr", httpAddr, "--cacert", filepath.Join(dir, "ca.crt"),
		"--cert", filepath.Join(dir, "app.crt"), "--key", filepath.Join(dir, "app.key")}
	mustRingkv(t, append(tlsArgs, "put", "greeting", "hello")...)
	if got := mustRingkv(t, append(tlsArgs, "get", "greeting")...); strings.TrimSpace(got) != "hello" {
		t.Fatalf("ringkv get over TLS: %q", got)
	}
	env := exec.Command(bin.ringkv, "--addr", httpAddr, "get", "greeting")
	env.Env = append(os.Environ(), "RINGKV_CACERT="+filepath.Join(dir, "ca.crt"),
		"RINGKV_CERT="+filepath.Join(dir, "app.crt"), "RINGKV_KEY="+filepath.Join(dir, "app.key"))
	if out, err := env.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("ringkv get with RINGKV_CACERT, RINGKV_CERT, RINGKV_KEY: %v %q", err, out)
	}

	refused := func(what string, c *http.Client) {
		t.Helper()
		resp, err := c.Get(url + "/v1/kv/greeting")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: answered %d", what, resp.StatusCode)
		}
	}
	refused("no client certificate", httpsClient(t, filepath.Join(dir, "ca.crt"), "", ""))
	refused("a client certificate of another CA", httpsClient(t, filepath.Join(dir, "ca.crt"), other, "app"))
	refused("a client that trusts another CA", httpsClient(t, filepath.Join(other, "ca.crt"), other, "app"))
	if out, err := exec.Command(bin.ringkv, "--addr", "http://"+httpAddr, "get", "greeting").CombinedOutput(); err == nil {
		t.Fatalf("plain HTTP to the TLS port: %s", out)
	}
	resp, err := http.Get("http://" + httpAddr + "/v1/kv/greeting")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Fatalf("plain HTTP to the TLS port: %d %q, want 400 naming HTTPS", resp.StatusCode, body)
	}

	eventually(t, "refused handshakes in the node's log", 10*time.Second, func() error {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "component=http") &&
				strings.Contains(line, "TLS handshake error") {
				return nil
			}
		}
		return fmt.Errorf("no warning of a refused TLS handshake")
	})

	// Rotate to the other CA: its node certificate, and a bundle of both
	// CAs for client certificates (the first step of a CA rotation).
	copyFile(filepath.Join(other, "node1.crt"), filepath.Join(serve, "node1.crt"))
	copyFile(filepath.Join(other, "node1.key"), filepath.Join(serve, "node1.key"))
	both := append(must(os.ReadFile(filepath.Join(dir, "ca.crt"))), must(os.ReadFile(filepath.Join(other, "ca.crt")))...)
	if err := os.WriteFile(filepath.Join(serve, "ca.crt.tmp"), both, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(serve, "ca.crt.tmp"), filepath.Join(serve, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	newApp := httpsClient(t, filepath.Join(other, "ca.crt"), other, "app")
	eventually(t, "the new certificates served after SIGHUP", 10*time.Second, func() error {
		resp, err := newApp.Get(url + "/v1/kv/greeting")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "hello" {
			return fmt.Errorf("%d %q", resp.StatusCode, b)
		}
		return nil
	})
	// An old client certificate still gets in (both CAs trusted), once it
	// trusts the node's new certificate.
	bundle := filepath.Join(t.TempDir(), "both.crt")
	if err := os.WriteFile(bundle, both, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = httpsClient(t, bundle, dir, "app").Get(url + "/v1/kv/greeting")
	if err != nil {
		t.Fatalf("old client certificate during the rotation: %v", err)
	}
	resp.Body.Close()
	if cmd.ProcessState != nil {
		t.Fatal("the node exited")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
