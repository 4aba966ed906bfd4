package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// rogue starts a ringkvd that tries to join the cluster at joinURL with
// the given extra flags, and returns the path of its log.
func rogue(t *testing.T, id, joinURL string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, id+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--id", id, "--http-addr", freePort(t), "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(dir, "data"), "--join", joinURL}, extra...)
	cmd := exec.Command(bin.ringkvd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	return logPath
}

// logSays waits until the log at path has a line with what, and returns
// that line.
func logSays(t *testing.T, path, what string, timeout time.Duration) string {
	t.Helper()
	var line string
	eventually(t, filepath.Base(path)+" says "+what, timeout, func() error {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, what) {
				line = l
				return nil
			}
		}
		return fmt.Errorf("not yet; last lines: %s", tail(b, 3))
	})
	return line
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// TestPeerTLS runs three real nodes whose Raft ports speak only mutual
// TLS, with certificates made by `ringkv certs`: they form the cluster,
// forward writes and reads, and verify replicas (node-to-node HTTP) over
// it. A node with a certificate of another CA and a node without peer TLS
// cannot join, and each is told why; plaintext Raft bytes are refused and
// logged.
func TestPeerTLS(t *testing.T) {
	ca, other := t.TempDir(), t.TempDir()
	mustRingkv(t, "certs", "create-ca", "--dir", ca)
	for i := 1; i <= 3; i++ {
		mustRingkv(t, "certs", "create-node", fmt.Sprintf("node%d", i), "--hosts", "127.0.0.1,localhost", "--dir", ca)
	}
	mustRingkv(t, "certs", "create-ca", "--dir", other)
	mustRingkv(t, "certs", "create-node", "node4", "--hosts", "127.0.0.1,localhost", "--dir", other)

	c := startCluster(t, 3, "--peer-cert", filepath.Join(ca, "{id}.crt"), "--peer-key", filepath.Join(ca, "{id}.key"),
		"--peer-ca", filepath.Join(ca, "ca.crt"))
	c.waitReady(3)
	for i := 0; i < 30; i++ {
		p := c.procs[i%3]
		k := fmt.Sprintf("tls/%02d", i)
		if _, err := p.Client.Put(ctx(t, 10*time.Second), k, []byte(k), client.PutOptions{}); err != nil {
			t.Fatalf("Put(%q) through %s: %v", k, p.ID, err)
		}
	}
	for _, p := range c.procs {
		for i := 0; i < 30; i += 7 {
			k := fmt.Sprintf("tls/%02d", i)
			v, err := p.Client.Get(ctx(t, 10*time.Second), k, "linearizable")
			if err != nil || string(v.Data) != k {
				t.Fatalf("Get(%q) through %s = %q, %v; want %q", k, p.ID, v.Data, err, k)
			}
		}
	}
	if out, err := ringkv(c.procs[1].URL(), "verify"); err != nil {
		t.Fatalf("verify over peer TLS: %v\n%s", err, out)
	}
	for _, p := range c.procs {
		b, _ := os.ReadFile(p.LogPath)
		if !bytes.Contains(b, []byte("Raft port serves mutual TLS only")) {
			t.Fatalf("%s does not say its Raft port serves TLS", p.ID)
		}
	}

	// Plaintext bytes with a valid header: refused before any group.
	conn, err := net.DialTimeout("tcp", c.procs[0].RaftAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{'R', 1, 0, 0, 0, 1, 0}
	conn.Write(append(hdr, []byte("an AppendEntries, say")...))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed with the bytes unread: an end of stream or a reset.
	if n, err := io.Copy(io.Discard, conn); n != 0 || err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("plaintext Raft bytes: read %d bytes, %v; want the connection closed", n, err)
	}
	conn.Close()
	logSays(t, c.procs[0].LogPath, "spoke without TLS to this node's Raft port", 5*time.Second)

	other4 := rogue(t, "node4", c.procs[0].URL(), "--peer-cert", filepath.Join(other, "node4.crt"),
		"--peer-key", filepath.Join(other, "node4.key"), "--peer-ca", filepath.Join(other, "ca.crt"))
	plain5 := rogue(t, "node5", c.procs[0].URL())
	for _, l := range []string{other4, plain5} {
		line := logSays(t, l, "join attempt failed", 20*time.Second)
		if !strings.Contains(line, "fails the peer TLS handshake") || !strings.Contains(line, "--peer-ca") {
			t.Fatalf("%s: %s; want the join refused for its peer TLS, naming the flags", filepath.Base(l), line)
		}
		t.Logf("%s", line)
	}
	logSays(t, plain5, "spoke TLS to this node's Raft port, which runs without peer TLS", 5*time.Second)
	var cl struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
	}
	if err := c.procs[2].Client.GetJSON(ctx(t, 5*time.Second), "/v1/cluster", nil, &cl); err != nil {
		t.Fatal(err)
	}
	if len(cl.Nodes) != 3 {
		t.Fatalf("after two refused joins the cluster has %d nodes: %+v", len(cl.Nodes), cl.Nodes)
	}
	if _, err := c.procs[2].Client.Put(ctx(t, 10*time.Second), "tls/after", []byte("ok"), client.PutOptions{}); err != nil {
		t.Fatalf("a write after the refused joins: %v", err)
	}
}
