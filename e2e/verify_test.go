package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/store"
)

// TestVerifyFindsADivergentReplica makes one replica of group 1 diverge
// behind Raft's back (a write applied to its state file alone) and checks
// that `ringkv verify` reports every replica agreeing before and the
// divergent one after, exiting non-zero.
func TestVerifyFindsADivergentReplica(t *testing.T) {
	c := startCluster(t, 3)
	for i := 0; i < 60; i++ {
		if _, err := c.procs[i%3].Client.Put(ctx(t, 10*time.Second), fmt.Sprintf("k%d", i), []byte("v"), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	verify := func() (string, error) {
		cmd := exec.Command(bin.ringkv, "--addr", c.procs[0].URL(), "verify")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := verify(); err != nil || strings.Contains(out, "NO") {
		t.Fatalf("healthy cluster: verify failed: %v\n%s", err, out)
	}

	victim := c.procs[2]
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(victim.DataDir, "groups", "1", "state.db"), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rogue := store.Command{Op: store.OpPut, Key: []byte("rogue"), Value: []byte("only here")}.Encode()
	if _, err := st.Apply(st.AppliedIndex()+1, rogue); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	out, err := verify()
	if err == nil {
		t.Fatalf("verify passed with a divergent replica:\n%s", out)
	}
	if !strings.Contains(out, victim.ID) || !strings.Contains(out, "NO") {
		t.Fatalf("verify did not name the divergent replica %s: %v\n%s", victim.ID, err, out)
	}
}
