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
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// rogue starts a ringkvd that tries to join the cluster at joinURL with
// the given extra flags, and returns the path of its log.
func rogue(t *testing.T, id, joinURL string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	_, logPath := startRingkvd(t, append([]string{"--id", id, "--http-addr", freePort(t), "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(dir, "data"), "--join", joinURL}, extra...)...)
	return logPath
}

// startRingkvd starts ringkvd with args, its output in a log file, and
// kills it when the test ends (printing the log if the test failed).
func startRingkvd(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "ringkvd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.ringkvd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("ringkvd %s log:\n%s", strings.Join(args[:2], " "), b)
		}
	})
	return cmd, logf.Name()
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

// TestPeerCertificatesRotateUnderLoad rotates the peer CA of a running
// cluster in the README's two steps, with SIGHUP and no restart, while
// writes go through every node: no write fails. Then a restarted node,
// whose every connection is new, rejoins with the new CA alone.
func TestPeerCertificatesRotateUnderLoad(t *testing.T) {
	oldCA, newCA, serve := t.TempDir(), t.TempDir(), t.TempDir()
	mustRingkv(t, "certs", "create-ca", "--dir", oldCA)
	mustRingkv(t, "certs", "create-ca", "--dir", newCA)
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// install writes a node's file in place, as an operator's copy would.
	install := func(id, name string, data []byte) {
		path := filepath.Join(serve, id, name)
		if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"node1", "node2", "node3"}
	for _, id := range ids {
		for _, ca := range []string{oldCA, newCA} {
			mustRingkv(t, "certs", "create-node", id, "--hosts", "127.0.0.1,localhost", "--dir", ca)
		}
		if err := os.MkdirAll(filepath.Join(serve, id), 0o700); err != nil {
			t.Fatal(err)
		}
		install(id, "node.crt", read(filepath.Join(oldCA, id+".crt")))
		install(id, "node.key", read(filepath.Join(oldCA, id+".key")))
		install(id, "ca.crt", read(filepath.Join(oldCA, "ca.crt")))
	}
	c := startCluster(t, 3, "--peer-cert", filepath.Join(serve, "{id}", "node.crt"),
		"--peer-key", filepath.Join(serve, "{id}", "node.key"), "--peer-ca", filepath.Join(serve, "{id}", "ca.crt"))
	c.waitReady(3)

	// Writes through every node (two in three are forwarded) until told.
	stop := make(chan struct{})
	type result struct {
		ok     int
		failed []error
	}
	done := make(chan result)
	var acked atomic.Int64 // writes acknowledged so far
	go func() {
		var r result
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- r
				return
			default:
			}
			p := c.procs[i%3]
			k := fmt.Sprintf("rot/%05d", i)
			if _, err := p.Client.Put(ctx(t, 10*time.Second), k, []byte(k), client.PutOptions{}); err != nil {
				r.failed = append(r.failed, fmt.Errorf("Put(%q) through %s: %w", k, p.ID, err))
			} else {
				r.ok++
				acked.Add(1)
			}
		}
	}()
	// progress waits for writes acknowledged after a step, so every step
	// is crossed by load however fast or slow this machine is.
	progress := func(step string) {
		t.Helper()
		from := acked.Load()
		eventually(t, "10 writes acknowledged after: "+step, 30*time.Second, func() error {
			if n := acked.Load() - from; n < 10 {
				return fmt.Errorf("%d writes so far", n)
			}
			return nil
		})
	}
	progress("the cluster started")
	reloadAll := func(step string, installStep func(id string)) {
		t.Helper()
		before := make([]int, len(c.procs))
		for i, p := range c.procs {
			before[i] = strings.Count(string(read(p.LogPath)), peerReloaded)
		}
		for _, id := range ids {
			installStep(id)
		}
		for i, p := range c.procs {
			if err := p.Reload(); err != nil {
				t.Fatal(err)
			}
			eventually(t, p.ID+" reloads its peer certificates: "+step, 10*time.Second, func() error {
				if n := strings.Count(string(read(p.LogPath)), peerReloaded); n <= before[i] {
					return fmt.Errorf("%d reloads logged", n)
				}
				return nil
			})
		}
	}
	bundle := append(read(filepath.Join(oldCA, "ca.crt")), read(filepath.Join(newCA, "ca.crt"))...)
	reloadAll("trust both CAs", func(id string) { install(id, "ca.crt", bundle) })
	progress("trust both CAs")
	reloadAll("certificates of the new CA", func(id string) {
		install(id, "node.key", read(filepath.Join(newCA, id+".key")))
		install(id, "node.crt", read(filepath.Join(newCA, id+".crt")))
	})
	progress("certificates of the new CA")
	reloadAll("trust the new CA alone", func(id string) { install(id, "ca.crt", read(filepath.Join(newCA, "ca.crt"))) })
	progress("trust the new CA alone")
	close(stop)
	r := <-done
	if len(r.failed) > 0 {
		t.Fatalf("%d of %d writes failed during the rotation; first: %v", len(r.failed), r.ok+len(r.failed), r.failed[0])
	}
	t.Logf("%d writes during the rotation, none failed", r.ok)

	// Every connection of a restarted node is new: the new CA alone.
	if err := c.procs[2].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.procs[2].Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	if _, err := c.procs[2].Client.Put(ctx(t, 10*time.Second), "rot/after-restart", []byte("ok"), client.PutOptions{}); err != nil {
		t.Fatalf("a write through the restarted node: %v", err)
	}
	if out, err := ringkv(c.procs[2].URL(), "verify"); err != nil {
		t.Fatalf("verify after the rotation: %v\n%s", err, out)
	}
}

// peerReloaded is what a node logs when it reloads its peer certificates.
const peerReloaded = `msg="certificates reloaded" port=peer`
