package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
)

// TestPeerSecret runs three real nodes with access control and without
// peer TLS: their Raft ports accept only nodes that prove the peer secret
// made when the cluster was bootstrapped. A node without --acl, and one
// with --acl but no token, cannot join; a node with --acl and a token
// allowing operator write learns the secret at join and serves at once.
func TestPeerSecret(t *testing.T) {
	c := startClusterWith(t, chaos.LocalOptions{Nodes: 3, ACL: true})
	c.waitReady(3)
	secretOf := func(dataDir string) []byte {
		t.Helper()
		path := filepath.Join(dataDir, "peer-secret")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		return b
	}
	first := secretOf(c.procs[0].DataDir)
	for _, p := range c.procs[1:] {
		if !bytes.Equal(secretOf(p.DataDir), first) {
			t.Fatalf("%s holds another peer secret than node1", p.ID)
		}
	}
	// Writes through every node: two in three are forwarded between
	// nodes that proved the secret.
	for i := 0; i < 30; i++ {
		p := c.procs[i%3]
		k := fmt.Sprintf("secret/%02d", i)
		if _, err := p.Client.Put(ctx(t, 10*time.Second), k, []byte(k), client.PutOptions{}); err != nil {
			t.Fatalf("Put(%q) through %s: %v", k, p.ID, err)
		}
	}
	members := func() int {
		var cl struct {
			Nodes []struct{} `json:"nodes"`
		}
		if err := c.procs[0].Client.GetJSON(ctx(t, 5*time.Second), "/v1/cluster", nil, &cl); err != nil {
			t.Fatal(err)
		}
		return len(cl.Nodes)
	}
	join := func(id string, extra ...string) (dataDir, logPath string) {
		dataDir = filepath.Join(t.TempDir(), "data")
		_, logPath = startRingkvd(t, append([]string{"--id", id, "--http-addr", freePort(t), "--raft-addr", freePort(t),
			"--data-dir", dataDir, "--join", c.procs[0].URL()}, extra...)...)
		return dataDir, logPath
	}

	// Without --acl, with the management token: the metadata leader's
	// probe offers the handshake; the node refuses it and says why.
	_, log1 := join("plain", "--token", c.lc.Token)
	logSays(t, log1, "start this node with --acl", 30*time.Second)
	// With --acl and no token: the secret is not handed out.
	dir2, log2 := join("tokenless", "--acl")
	logSays(t, log2, "a node joins with a token allowing operator write", 30*time.Second)
	if _, err := os.Stat(filepath.Join(dir2, "peer-secret")); !os.IsNotExist(err) {
		t.Fatalf("a node that joined without a token has a peer secret: %v", err)
	}
	if n := members(); n != 3 {
		t.Fatalf("after two refused joins the cluster has %d nodes", n)
	}

	// With --acl and the token: it learns the secret, joins, and serves.
	dir4, log4 := join("node4", "--acl", "--token", c.lc.Token)
	logSays(t, log4, "joined cluster", 60*time.Second)
	if !bytes.Equal(secretOf(dir4), first) {
		t.Fatal("the joined node holds another peer secret")
	}
	if n := members(); n != 4 {
		t.Fatalf("after node4 joined the cluster has %d nodes", n)
	}
	var addr struct {
		Nodes []struct {
			ID       string `json:"id"`
			HTTPAddr string `json:"http_addr"`
		} `json:"nodes"`
	}
	if err := c.procs[0].Client.GetJSON(ctx(t, 5*time.Second), "/v1/cluster", nil, &addr); err != nil {
		t.Fatal(err)
	}
	var url4 string
	for _, n := range addr.Nodes {
		if n.ID == "node4" {
			url4 = n.HTTPAddr
		}
	}
	n4 := client.New(url4, client.WithToken(c.lc.Token))
	t.Cleanup(n4.Close)
	eventually(t, "node4 serves a linearizable read", 30*time.Second, func() error {
		v, err := n4.Get(ctx(t, 5*time.Second), "secret/07", "linearizable")
		if err != nil {
			return err
		}
		if string(v.Data) != "secret/07" {
			return fmt.Errorf("read %q", v.Data)
		}
		return nil
	})
}

// TestBootstrapScripted does what the compose file's secure profile does
// at every start: certificates made or kept, a bootstrap that starts with
// its node and saves the token (kept on the next run, no second
// bootstrap), and a node joining with --token-file.
func TestBootstrapScripted(t *testing.T) {
	dir := t.TempDir()
	for run := 0; run < 2; run++ {
		mustRingkv(t, "certs", "create-ca", "--dir", dir, "--keep-existing")
	}
	if out, err := exec.Command(bin.ringkv, "certs", "create-ca", "--dir", dir).CombinedOutput(); err == nil {
		t.Fatalf("create-ca over an existing CA succeeded: %s", out)
	}
	url1 := "http://" + freePort(t)
	startRingkvd(t, "--id", "node1", "--http-addr", strings.TrimPrefix(url1, "http://"), "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(dir, "d1"), "--acl")
	// At once: the bootstrap waits for the node to serve.
	saved := filepath.Join(dir, "management.token")
	out := mustRingkv(t, "--addr", url1, "--timeout", "60s", "acl", "bootstrap", "--save", saved)
	if strings.Contains(out, "kept") {
		t.Fatalf("the first bootstrap: %s", out)
	}
	fi, err := os.Stat(saved)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the saved token: %v, %v; want mode 0600", fi, err)
	}
	token, _ := os.ReadFile(saved)
	if out := mustRingkv(t, "--addr", url1, "acl", "bootstrap", "--save", saved); !strings.Contains(out, "kept") {
		t.Fatalf("the second run: %s", out)
	}
	if again, _ := os.ReadFile(saved); !bytes.Equal(again, token) {
		t.Fatal("the second run changed the saved token")
	}
	_, log2 := startRingkvd(t, "--id", "node2", "--http-addr", freePort(t), "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(dir, "d2"), "--acl", "--join", url1, "--token-file", saved)
	logSays(t, log2, "joined cluster", 60*time.Second)
	cmd := exec.Command(bin.ringkv, "--addr", url1, "put", "scripted", "yes")
	cmd.Env = append(os.Environ(), "RINGKV_TOKEN="+strings.TrimSpace(string(token)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("a write with the saved token: %v %s", err, out)
	}
}
