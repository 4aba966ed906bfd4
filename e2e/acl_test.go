package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/certs"
	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
)

// TestAccessControl runs three real nodes with client TLS, peer TLS and
// access control, every certificate made by `ringkv certs`: tokens with
// key-prefix policies read, write and list what they may and nothing
// else, on every node; an operator token sees status but changes nothing;
// a ring change and a fourth node joining with the management token (and
// a replica moving onto it) go through; a deleted token and a narrowed
// policy stop working on every node within ACLStaleAfter's bound of 2 s; a
// node without --acl cannot join; the last management token is kept.
func TestAccessControl(t *testing.T) {
	dir := t.TempDir()
	mustRingkv(t, "certs", "create-ca", "--dir", dir)
	for i := 1; i <= 5; i++ {
		mustRingkv(t, "certs", "create-node", fmt.Sprintf("node%d", i), "--hosts", "127.0.0.1,localhost", "--dir", dir)
	}
	mustRingkv(t, "certs", "create-client", "app", "--dir", dir)
	ca := filepath.Join(dir, "ca.crt")
	tlsArgs := []string{"--tls-cert", filepath.Join(dir, "{id}.crt"), "--tls-key", filepath.Join(dir, "{id}.key"), "--tls-client-ca", ca,
		"--peer-cert", filepath.Join(dir, "{id}.crt"), "--peer-key", filepath.Join(dir, "{id}.key"), "--peer-ca", ca}
	r, err := certs.NewReloader(filepath.Join(dir, "app.crt"), filepath.Join(dir, "app.key"), ca)
	if err != nil {
		t.Fatal(err)
	}
	c := startClusterWith(t, chaos.LocalOptions{Nodes: 3, Args: tlsArgs, ACL: true, ClientTLS: r.ClientConfig()})
	c.waitReady(3)
	mgmt := c.lc.Token
	as := func(i int, token string) *client.Client {
		opts := []client.Option{client.WithTLS(r.ClientConfig())}
		if token != "" {
			opts = append(opts, client.WithToken(token))
		}
		cl := client.New(c.procs[i].URL(), opts...)
		t.Cleanup(cl.Close)
		return cl
	}
	code := func(err error) string {
		var e *client.Error
		if errors.As(err, &e) {
			return fmt.Sprintf("%d %s", e.Status, e.Code)
		}
		if err != nil {
			return err.Error()
		}
		return "200"
	}
	// The CLI, as an operator runs it: TLS and token from the environment.
	cli := func(i int, token string, args ...string) (string, error) {
		cmd := exec.Command(bin.ringkv, append([]string{"--addr", c.procs[i].URL()}, args...)...)
		cmd.Env = append(os.Environ(), "RINGKV_CACERT="+ca, "RINGKV_CERT="+filepath.Join(dir, "app.crt"),
			"RINGKV_KEY="+filepath.Join(dir, "app.key"), "RINGKV_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	secretOf := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "SecretID:"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no secret in %q", out)
		return ""
	}
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return out
	}

	// Without a token: probes answer, nothing else does.
	anon := as(0, "")
	if _, err := anon.Put(ctx(t, 5*time.Second), "app/x", []byte("v"), client.PutOptions{}); code(err) != "401 unauthorized" {
		t.Fatalf("a put without a token: %v", err)
	}
	if _, err := anon.Status(ctx(t, 5*time.Second)); code(err) != "401 unauthorized" {
		t.Fatalf("status without a token: %v", err)
	}
	if alive, ready, why := anon.Healthy(ctx(t, 5*time.Second)); !alive || !ready {
		t.Fatalf("probes without a token: alive %v ready %v (%s)", alive, ready, why)
	}
	if out, err := cli(1, "", "acl", "bootstrap"); err == nil || !strings.Contains(out, "409") {
		t.Fatalf("a second bootstrap: %v %s", err, out)
	}

	must(cli(0, mgmt, "acl", "policy", "create", "app", "--rule", "app/=write", "--description", "the app"))
	must(cli(1, mgmt, "acl", "policy", "create", "ops", "--operator", "read"))
	appTok := secretOf(must(cli(2, mgmt, "acl", "token", "create", "--policy", "app", "--description", "app servers")))
	opsTok := secretOf(must(cli(0, mgmt, "acl", "token", "create", "--policy", "ops")))
	boss := as(0, mgmt)
	if _, err := boss.Put(ctx(t, 5*time.Second), "secret/k", []byte("s"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	// The app token, created on node3, works on every node at once.
	for i := 0; i < 3; i++ {
		app := as(i, appTok)
		for j := 0; j < 10; j++ {
			k := fmt.Sprintf("app/%d-%d", i, j)
			if _, err := app.Put(ctx(t, 10*time.Second), k, []byte(k), client.PutOptions{}); err != nil {
				t.Fatalf("app Put(%q) on node%d: %v", k, i+1, err)
			}
		}
		if _, err := app.Put(ctx(t, 5*time.Second), "secret/k", []byte("x"), client.PutOptions{}); code(err) != "403 forbidden" {
			t.Fatalf("app writing secret/k on node%d: %v", i+1, err)
		}
		if _, err := app.Get(ctx(t, 5*time.Second), "secret/k", "linearizable"); code(err) != "403 forbidden" {
			t.Fatalf("app reading secret/k on node%d: %v", i+1, err)
		}
		keys, err := app.Keys(ctx(t, 10*time.Second), "", client.ListOptions{})
		if err != nil || len(keys) != 10*(i+1) || !strings.HasPrefix(keys[0], "app/") || !strings.HasPrefix(keys[len(keys)-1], "app/") {
			t.Fatalf("app lists on node%d: %d keys %v, %v; want only its %d app/ keys", i+1, len(keys), keys, err, 10*(i+1))
		}
	}
	if v, err := boss.Get(ctx(t, 5*time.Second), "secret/k", "linearizable"); err != nil || string(v.Data) != "s" {
		t.Fatalf("secret/k after the refused writes: %q %v", v.Data, err)
	}

	// The operator-read token sees status, changes nothing.
	ops := as(1, opsTok)
	if _, err := ops.Status(ctx(t, 5*time.Second)); err != nil {
		t.Fatalf("status with operator read: %v", err)
	}
	if out, err := cli(1, opsTok, "ring", "add"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("a ring change with operator read: %v %s", err, out)
	}
	if _, err := ops.Put(ctx(t, 5*time.Second), "app/ops", []byte("x"), client.PutOptions{}); code(err) != "403 forbidden" {
		t.Fatalf("operator read writing a key: %v", err)
	}

	// Operator actions with the management token: a ring change, and a
	// fourth node that joins with it and receives a replica.
	must(cli(0, mgmt, "ring", "add"))
	p4, err := c.lc.StartNode(ctx(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.procs = c.lc.Procs
	eventually(t, "node4 holds a replica", 90*time.Second, func() error {
		st, err := p4.Client.Status(ctx(t, 5*time.Second))
		if err != nil {
			return err
		}
		if len(st.Groups) == 0 {
			return errors.New("no replica yet")
		}
		return nil
	})
	for j := 0; j < 10; j++ {
		k := fmt.Sprintf("app/0-%d", j)
		if v, err := as(3, appTok).Get(ctx(t, 10*time.Second), k, "linearizable"); err != nil || string(v.Data) != k {
			t.Fatalf("Get(%q) on node4 after the ring change = %q, %v", k, v.Data, err)
		}
	}

	// A node from the same CA without --acl is refused, saying why.
	logPath := rogue(t, "node5", c.procs[0].URL(), append(strings.Fields(strings.ReplaceAll(strings.Join(tlsArgs, " "), "{id}", "node5")),
		"--token", mgmt)...)
	if line := logSays(t, logPath, "join attempt failed", 30*time.Second); !strings.Contains(line, "runs without --acl") {
		t.Fatalf("node5 without --acl: %s", line)
	}

	// Narrow the policy, then delete the token: every node refuses within
	// the bound.
	must(cli(2, mgmt, "acl", "policy", "update", "app", "--rule", "app/=read"))
	refusedEverywhere(t, c, func(i int) error {
		_, err := as(i, appTok).Put(ctx(t, 5*time.Second), "app/late", []byte("x"), client.PutOptions{})
		if code(err) == "403 forbidden" {
			return nil
		}
		return fmt.Errorf("node%d: a write after the policy became read-only: %v", i+1, err)
	})
	var tokens []struct {
		AccessorID string `json:"accessor_id"`
		Management bool   `json:"management"`
		SecretID   string `json:"secret_id"`
	}
	if err := boss.DoJSON(ctx(t, 5*time.Second), http.MethodGet, "/v1/acl/tokens", nil, &tokens); err != nil {
		t.Fatal(err)
	}
	var mgmtID string
	for _, tk := range tokens {
		if tk.SecretID != "" {
			t.Fatalf("a token list shows a secret: %+v", tk)
		}
		if tk.Management {
			mgmtID = tk.AccessorID
		}
	}
	var self struct {
		AccessorID string `json:"accessor_id"`
	}
	if err := as(0, appTok).DoJSON(ctx(t, 5*time.Second), http.MethodGet, "/v1/acl/token/self", nil, &self); err != nil {
		t.Fatal(err)
	}
	must(cli(1, mgmt, "acl", "token", "delete", self.AccessorID))
	refusedEverywhere(t, c, func(i int) error {
		_, err := as(i, appTok).Get(ctx(t, 5*time.Second), "app/0-0", "stale")
		if code(err) == "401 unauthorized" {
			return nil
		}
		return fmt.Errorf("node%d: a read with the deleted token: %v", i+1, err)
	})
	if out, err := cli(0, mgmt, "acl", "token", "delete", mgmtID); err == nil || !strings.Contains(out, "last management token") {
		t.Fatalf("deleting the last management token: %v %s", err, out)
	}
	for _, p := range c.procs[:1] {
		b, _ := os.ReadFile(p.LogPath)
		for _, want := range []string{`msg=acl`, `action="create policy app"`, `allowed=false`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s's log does not record acl actions (%s)", p.ID, want)
			}
		}
	}
	// Raw HTTP with a huge token gets a JSON 401, not a server error.
	hc := httpsClient(t, ca, dir, "app")
	req, _ := http.NewRequest("GET", c.procs[0].URL()+"/v1/kv/app/x", nil)
	req.Header.Set("X-Ringkv-Token", strings.Repeat("t", 100000))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var we struct{ Code string }
	if resp.StatusCode != 401 || json.Unmarshal(body, &we) != nil || we.Code != "unauthorized" {
		t.Fatalf("a 100,000-byte token: %d %s", resp.StatusCode, body)
	}
}

// refusedEverywhere waits, on every node, for check to hold, and fails if
// it does not within 2 s of the change (the bound the README states).
func refusedEverywhere(t *testing.T, c *cluster, check func(i int) error) {
	t.Helper()
	start := time.Now()
	for i := range c.procs {
		eventually(t, fmt.Sprintf("node%d refuses", i+1), 2*time.Second-time.Since(start), func() error { return check(i) })
	}
	t.Logf("refused on every node %v after the change", time.Since(start).Round(time.Millisecond))
}
