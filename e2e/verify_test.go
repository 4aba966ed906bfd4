package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/snapshot"
	"github.com/ringkv/ringkv/store"
)

// ringkv runs the CLI against url and returns its output and error.
func ringkv(url string, args ...string) (string, error) {
	cmd := exec.Command(bin.ringkv, append([]string{"--addr", url}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// diverge changes key in the state file at path behind Raft's back, as a
// replica with a nondeterministic apply or a bad disk would: the entry and
// the Merkle tree change, the applied index does not.
func diverge(t *testing.T, path, key, value string) {
	t.Helper()
	st, err := store.Open(path, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	applied := st.AppliedIndex()
	if _, err := st.Apply(applied+1, store.Command{Op: store.OpPut, Key: []byte(key), Value: []byte(value)}.Encode()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], applied)
		return tx.Bucket([]byte("meta")).Put([]byte("applied"), b[:])
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVerifyFindsAndRepairsADivergentReplica makes one replica of group 1
// diverge behind Raft's back and checks that `ringkv verify` agrees before,
// then names the divergent replica, the key range and the key, repairs it
// from the leader while the cluster keeps serving, and agrees again; the
// replica's status and metrics count the divergence and the repair.
func TestVerifyFindsAndRepairsADivergentReplica(t *testing.T) {
	c := startCluster(t, 3)
	var inGroup1 []string
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("k%d", i)
		res, err := c.procs[i%3].Client.Put(ctx(t, 10*time.Second), k, []byte("v"), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Group == 1 {
			inGroup1 = append(inGroup1, k)
		}
	}
	if out, err := ringkv(c.procs[0].URL(), "verify"); err != nil || strings.Contains(out, "NO") {
		t.Fatalf("healthy cluster: verify failed: %v\n%s", err, out)
	}

	victim := c.procs[2]
	target := inGroup1[0]
	onDisk(t, victim, target)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	diverge(t, filepath.Join(victim.DataDir, "groups", "1", "state.db"), target, "only here")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)

	out, err := ringkv(c.procs[0].URL(), "verify", "1")
	if err == nil {
		t.Fatalf("verify passed with a divergent replica:\n%s", out)
	}
	for _, want := range []string{victim.ID + "  ", "NO", "key range", fmt.Sprintf("key %q", target), "repaired from"} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out)
		}
	}
	if out, err := ringkv(c.procs[1].URL(), "verify"); err != nil || strings.Contains(out, "NO") {
		t.Fatalf("after the repair: verify failed: %v\n%s", err, out)
	}
	v, err := victim.Client.Get(ctx(t, 5*time.Second), target, "stale")
	if err != nil || string(v.Data) != "v" {
		t.Fatalf("repaired replica serves %q, %v; want %q", v.Data, err, "v")
	}
	var st struct {
		Groups []struct {
			ID          uint32 `json:"id"`
			Divergences uint64 `json:"divergences"`
			Repairs     uint64 `json:"repairs"`
		} `json:"groups"`
	}
	if err := victim.Client.GetJSON(ctx(t, 5*time.Second), "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Groups {
		if g.ID == 1 && (g.Divergences != 1 || g.Repairs != 1) {
			t.Fatalf("status of the repaired replica: %+v; want 1 divergence, 1 repair", g)
		}
	}
	resp, err := http.Get(victim.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`ringkv_replica_divergences_total{group="1"} 1`, `ringkv_replica_repairs_total{group="1"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Fatalf("metrics of the repaired replica lack %s", m)
		}
	}
}

// damageValue copies the archive in from to to with one byte changed in
// every copy of value in the checkpoints, and returns the group whose
// checkpoint holds it. The archive stays a valid tar.
func damageValue(t *testing.T, from, to, value string) uint32 {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	var group uint32
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		// Every copy: bbolt may keep stale ones in free pages.
		for i := bytes.Index(b, []byte(value)); i >= 0 && strings.HasSuffix(h.Name, ".ckpt"); i = bytes.Index(b, []byte(value)) {
			b[i+len(value)-1] ^= 0x01
			fmt.Sscanf(h.Name, "groups/%d.ckpt", &group)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if group == 0 {
		t.Fatalf("no checkpoint in %s holds %q", from, value)
	}
	return group
}

// holdsExactly checks, with a linearizable listing, that the cluster holds
// exactly want.
func (c *cluster) holdsExactly(want map[string]string) {
	c.t.Helper()
	es, err := c.procs[0].Client.List(ctx(c.t, 20*time.Second), "", client.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range es {
		got[e.Key] = string(e.Value)
	}
	if len(got) != len(want) {
		c.t.Fatalf("cluster holds %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			c.t.Fatalf("%q = %q, want %q", k, got[k], v)
		}
	}
}

// putAll writes every key through the cluster's nodes, 32 at a time.
func putAll(t *testing.T, c *cluster, kvs map[string]string) {
	t.Helper()
	type kv struct{ k, v string }
	work := make(chan kv)
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		go func(w int) {
			var first error
			for e := range work {
				if _, err := c.procs[w%len(c.procs)].Client.Put(ctx(t, 20*time.Second), e.k, []byte(e.v), client.PutOptions{}); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}(w)
	}
	for k, v := range kvs {
		work <- kv{k, v}
	}
	close(work)
	for w := 0; w < 32; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupVerifyRestore takes a backup of a cluster holding 10,000 keys,
// checks it, finds a damaged copy's group and key, compares it with the
// live cluster after a change, then restores it into a fresh 3-node
// cluster with the same ring (every group's root equal) and into a single
// node with a different number of groups (keys re-hashed, the set of keys
// and values proved identical), comparing every key each time.
func TestBackupVerifyRestore(t *testing.T) {
	src := startCluster(t, 3)
	want := map[string]string{}
	for i := 0; i < 10000; i++ {
		want[fmt.Sprintf("user/%05d", i)] = fmt.Sprintf("value-%05d", i)
	}
	putAll(t, src, want)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.tar")
	out, err := ringkv(src.procs[1].URL(), "backup", "-o", file)
	if err != nil || !strings.Contains(out, "10000 keys") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if out, err := ringkv(src.procs[0].URL(), "backup", "verify", file); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("backup verify: %v\n%s", err, out)
	}

	// A changed key shows up against the live cluster, in its group only.
	res, err := src.procs[0].Client.Put(ctx(t, 10*time.Second), "user/00007", []byte("changed"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err = ringkv(src.procs[0].URL(), "backup", "verify", file, "--against", src.procs[2].URL())
	if err != nil || strings.Count(out, "changed at") != 1 || !strings.Contains(out, fmt.Sprintf("group %d vs live", res.Group)) || !strings.Contains(out, `"user/00007"`) {
		t.Fatalf("backup verify --against: %v\n%s", err, out)
	}

	// A damaged copy is refused, naming the group and the key.
	bad := filepath.Join(dir, "bad.tar")
	damaged := damageValue(t, file, bad, "value-04242")
	out, err = ringkv(src.procs[0].URL(), "backup", "verify", bad)
	if err == nil || !strings.Contains(out, fmt.Sprintf("group %d: damaged", damaged)) || !strings.Contains(out, `"user/04242"`) {
		t.Fatalf("backup verify of a damaged copy: %v\n%s", err, out)
	}

	// Group 2's checkpoint shipped as group 1's, the manifest made to
	// match: each file is intact, but it is the wrong group's.
	swapped := filepath.Join(dir, "swapped.tar")
	swapCheckpoints(t, file, swapped, 1, 2)
	out, err = ringkv(src.procs[0].URL(), "backup", "verify", swapped)
	if err == nil || !strings.Contains(out, "group 1: the checkpoint is one of group 2") {
		t.Fatalf("backup verify of swapped checkpoints: %v\n%s", err, out)
	}

	// Same ring: installed group by group, roots equal.
	same := startCluster(t, 3)
	if out, err := ringkv(same.procs[0].URL(), "restore", bad); err == nil {
		t.Fatalf("restore of a damaged backup succeeded:\n%s", out)
	}
	if out, err := ringkv(same.procs[0].URL(), "restore", swapped); err == nil || !strings.Contains(out, "is a checkpoint of group 2, not of group 1") {
		t.Fatalf("restore of swapped checkpoints: %v\n%s", err, out)
	}
	out, err = ringkv(same.procs[0].URL(), "restore", file)
	if err != nil || !strings.Contains(out, "group by group") || strings.Contains(out, " NO\n") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	same.holdsExactly(want)
	if _, err := same.procs[2].Client.Put(ctx(t, 10*time.Second), "after", []byte("restore"), client.PutOptions{}); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	if out, err := ringkv(same.procs[1].URL(), "verify"); err != nil {
		t.Fatalf("verify after restore: %v\n%s", err, out)
	}
	if out, err := ringkv(same.procs[0].URL(), "restore", file); err == nil || !strings.Contains(out, "already holds keys") {
		t.Fatalf("restore into a cluster holding keys: %v\n%s", err, out)
	}

	// A single node with four groups: re-hashed onto its ring, proved
	// identical.
	other := startCluster(t, 1, "--groups", "4")
	out, err = ringkv(other.procs[0].URL(), "restore", file)
	if err != nil || !strings.Contains(out, "re-hashed") || !strings.Contains(out, "proved") {
		t.Fatalf("restore onto 4 groups: %v\n%s", err, out)
	}
	other.holdsExactly(want)
	var ring struct {
		Groups []json.RawMessage `json:"groups"`
	}
	if err := other.procs[0].Client.GetJSON(ctx(t, 5*time.Second), "/v1/ring", nil, &ring); err != nil || len(ring.Groups) != 4 {
		t.Fatalf("target ring: %d groups, %v", len(ring.Groups), err)
	}
}

// onDisk waits until p's replica holds key and lists it there. A list
// commits the state file's open transaction (applied writes wait in it for
// --apply-commit-delay), so once p is killed its state file holds key and
// a test can edit it there.
func onDisk(t *testing.T, p *chaos.Proc, key string) {
	t.Helper()
	eventually(t, p.ID+" holds "+key+" in its state file", 10*time.Second, func() error {
		// A stale list reads p's own replicas; a point read would not
		// commit.
		es, err := p.Client.List(ctx(t, 2*time.Second), key, client.ListOptions{Consistency: "stale"})
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Key == key {
				return nil
			}
		}
		return fmt.Errorf("%s does not hold %q yet", p.ID, key)
	})
}

// rot changes the stored value of key in the state file at path in place,
// as a bad disk would: neither the Merkle tree kept with the data nor the
// applied index notices.
func rot(t *testing.T, path, key string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("kv"))
		v := append([]byte(nil), b.Get([]byte(key))...)
		if len(v) == 0 {
			return fmt.Errorf("no key %q", key)
		}
		v[len(v)-1] ^= 0x20
		return b.Put([]byte(key), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVerifyFindsAValueChangedOnDisk changes a stored value in place in a
// stopped follower's state file: the kept Merkle tree still agrees, so a
// shallow verification passes; the default one recomputes each root from
// the data, names the group, the replica and the key, and repairs it.
func TestVerifyFindsAValueChangedOnDisk(t *testing.T) {
	c := startCluster(t, 3)
	var target string
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("doc/%02d", i)
		res, err := c.procs[0].Client.Put(ctx(t, 10*time.Second), k, []byte("payload"), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Group == 2 && target == "" {
			target = k
		}
	}
	victim := c.procs[1]
	onDisk(t, victim, target)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	rot(t, filepath.Join(victim.DataDir, "groups", "2", "state.db"), target)
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	if out, err := ringkv(c.procs[0].URL(), "verify", "2", "--shallow"); err != nil {
		t.Fatalf("a shallow verify compares kept trees only and should pass: %v\n%s", err, out)
	}
	out, err := ringkv(c.procs[2].URL(), "verify")
	for _, want := range []string{"NO: its data gives root", fmt.Sprintf("group 2, replica %s differs", victim.ID), fmt.Sprintf("key %q", target), "repaired from"} {
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("verify of a replica with a value changed on disk: %v; output lacks %q:\n%s", err, want, out)
		}
	}
	if out, err := ringkv(c.procs[0].URL(), "verify"); err != nil {
		t.Fatalf("verify after the repair: %v\n%s", err, out)
	}
	v, err := victim.Client.Get(ctx(t, 5*time.Second), target, "stale")
	if err != nil || string(v.Data) != "payload" {
		t.Fatalf("repaired replica serves %q, %v", v.Data, err)
	}
}

// TestPeriodicVerificationRepairs starts nodes with --verify-interval and
// checks that a replica changed behind Raft's back is found and repaired
// without anyone asking.
func TestPeriodicVerificationRepairs(t *testing.T) {
	c := startCluster(t, 3, "--verify-interval", "300ms")
	var target string
	for i := 0; target == "" || i < 20; i++ {
		k := fmt.Sprintf("p%d", i)
		res, err := c.procs[0].Client.Put(ctx(t, 10*time.Second), k, []byte("v"), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Group == 3 && target == "" {
			target = k
		}
	}
	victim := c.procs[0]
	onDisk(t, victim, target)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	rot(t, filepath.Join(victim.DataDir, "groups", "3", "state.db"), target)
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	eventually(t, "periodic verification repairs the replica", 60*time.Second, func() error {
		var st struct {
			Groups []struct {
				ID      uint32 `json:"id"`
				Repairs uint64 `json:"repairs"`
			} `json:"groups"`
		}
		if err := victim.Client.GetJSON(ctx(t, 5*time.Second), "/v1/status", nil, &st); err != nil {
			return err
		}
		for _, g := range st.Groups {
			if g.ID == 3 && g.Repairs > 0 {
				return nil
			}
		}
		return fmt.Errorf("no repair yet")
	})
	v, err := victim.Client.Get(ctx(t, 5*time.Second), target, "stale")
	if err != nil || string(v.Data) != "v" {
		t.Fatalf("repaired replica serves %q, %v", v.Data, err)
	}
}

// swapCheckpoints copies the backup at from to to with groups a and b's
// checkpoints and trees exchanged under each other's names, and the
// manifest rewritten to match (sizes, digests, roots, keys, its own root),
// as someone who wanted it to pass would.
func swapCheckpoints(t *testing.T, from, to string, a, b uint32) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ar, err := snapshot.NewArchiveReader(in)
	if err != nil {
		t.Fatal(err)
	}
	m := ar.Manifest
	files := map[string][]byte{}
	for {
		name, r, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if files[name], err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	var ga, gb *snapshot.ManifestGroup
	for i := range m.Groups {
		switch m.Groups[i].ID {
		case a:
			ga = &m.Groups[i]
		case b:
			gb = &m.Groups[i]
		}
	}
	if ga == nil || gb == nil {
		t.Fatalf("groups %d and %d not both in the backup", a, b)
	}
	files[ga.Checkpoint.Name], files[gb.Checkpoint.Name] = files[gb.Checkpoint.Name], files[ga.Checkpoint.Name]
	files[ga.Tree.Name], files[gb.Tree.Name] = files[gb.Tree.Name], files[ga.Tree.Name]
	// Everything but each entry's id and file names follows its file.
	ca, cb := *ga, *gb
	*ga, *gb = cb, ca
	ga.ID, ga.Checkpoint.Name, ga.Tree.Name = a, ca.Checkpoint.Name, ca.Tree.Name
	gb.ID, gb.Checkpoint.Name, gb.Tree.Name = b, cb.Checkpoint.Name, cb.Tree.Name
	if m.Root, err = m.ComputeRoot(); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	aw, err := snapshot.NewArchiveWriter(out, &m)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range m.Groups {
		for _, f := range []snapshot.File{g.Checkpoint, g.Tree} {
			if err := aw.AddFile(f.Name, f.Size, bytes.NewReader(files[f.Name])); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
}
