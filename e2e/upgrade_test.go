package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/protocol"
)

// previousRelease is the last commit before the node-to-node protocol was
// versioned (and raftnode split into packages): the release a rolling
// upgrade starts from.
const previousRelease = "89e23c09009878f64704b020c85def1b254587a8"

// buildPrevious builds previousRelease's ringkvd from this repository's
// history.
func buildPrevious(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	archive := exec.Command("git", "archive", "--format=tar", previousRelease)
	archive.Dir = ".."
	tarx := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	tarx.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := tarx.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s (a clone with the project's history is needed): %v %s", previousRelease, err, stderr.String())
	}
	if err := tarx.Wait(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "ringkvd-previous")
	build := exec.Command("go", "build", "-o", out, "./cmd/ringkvd")
	build.Dir = src
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the previous release: %v\n%s", err, b)
	}
	return out
}

// A cluster upgrades one node at a time from the previous release: with
// one node of it and two of this one, and again once all three run this
// one, every node serves writes, linearizable reads and lists of
// everything written so far; the new nodes say their protocol version,
// the old one none.
func TestRollingUpgradeFromThePreviousRelease(t *testing.T) {
	prev := buildPrevious(t)
	c := startClusterWith(t, chaos.LocalOptions{Nodes: 3, Bin: prev})
	c.waitReady(3)
	want := map[string]string{}
	write := func(via int, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			k := fmt.Sprintf("upgrade/%s/%03d", c.procs[via].ID, len(want))
			eventually(t, "a write through "+c.procs[via].ID, 20*time.Second, func() error {
				_, err := c.procs[via].Client.Put(ctx(t, 5*time.Second), k, []byte("v-"+k), client.PutOptions{})
				return err
			})
			want[k] = "v-" + k
		}
	}
	serves := func(stage string) {
		t.Helper()
		for i, p := range c.procs {
			write(i, 20)
			for k, v := range want {
				got, err := p.Client.Get(ctx(t, 10*time.Second), k, "linearizable")
				if err != nil || string(got.Data) != v {
					t.Fatalf("%s: read %s through %s: %q %v, want %q", stage, k, p.ID, got.Data, err, v)
				}
			}
			var listed []client.Entry
			eventually(t, stage+": a list through "+p.ID, 20*time.Second, func() error {
				var err error
				listed, err = p.Client.List(ctx(t, 10*time.Second), "upgrade/", client.ListOptions{})
				return err
			})
			if len(listed) != len(want) {
				t.Fatalf("%s: list through %s: %d keys, want %d", stage, p.ID, len(listed), len(want))
			}
		}
	}
	versions := func() []int {
		var out []int
		for _, p := range c.procs {
			st, err := p.Client.Status(ctx(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, st.Protocol)
		}
		return out
	}
	upgrade := func(i int) {
		t.Helper()
		p := c.procs[i]
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		p.UseBinary(bin.ringkvd)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		c.waitReady(3)
	}

	write(0, 50)
	upgrade(1)
	upgrade(2)
	if v := versions(); v[0] != 0 || v[1] != protocol.Version || v[2] != protocol.Version {
		t.Fatalf("protocol versions with one node of the previous release: %v, want [0 %d %d]", v, protocol.Version, protocol.Version)
	}
	serves("one node of the previous release, two of this one")
	upgrade(0)
	if v := versions(); v[0] != protocol.Version || v[1] != protocol.Version || v[2] != protocol.Version {
		t.Fatalf("protocol versions after the upgrade: %v", v)
	}
	serves("all three upgraded")
}
