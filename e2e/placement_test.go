package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// clusterInfo is GET /v1/cluster, as far as these tests read it.
type clusterInfo struct {
	Nodes []struct {
		ID       string   `json:"id"`
		Replicas []uint32 `json:"replicas"`
	} `json:"nodes"`
	Move *struct {
		Group uint32 `json:"group"`
		From  string `json:"from"`
		To    string `json:"to"`
	} `json:"replica_move"`
	Balanced bool `json:"balanced"`
}

// TestReplicaMoveSurvivesKill9: a fourth node joins a loaded cluster and
// replicas start moving onto it; the metadata leader, which runs the
// moves, is killed with SIGKILL in the middle of one. The next metadata
// leader finishes it from the record in the metadata group, the killed
// node comes back, and in the end every group has three voters matching
// the layout, the new node holds its share, every key reads back and
// every replica verifies equal.
func TestReplicaMoveSurvivesKill9(t *testing.T) {
	c := startCluster(t, 3, "--groups", "6", "--snapshot-threshold", "2000", "--trailing-logs", "500")
	load := ctx(t, 2*time.Minute)
	want := map[string]string{}
	for i := 0; i < 3000; i++ {
		k, v := fmt.Sprintf("k/%05d", i), fmt.Sprintf("v%d", i)
		if _, err := c.procs[i%3].Client.Put(load, k, []byte(v), client.PutOptions{}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		want[k] = v
	}
	if _, err := c.lc.StartNode(ctx(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.procs = c.lc.Procs
	info := func(p int) (clusterInfo, error) {
		var ci clusterInfo
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := c.procs[p].Client.GetJSON(rctx, "/v1/cluster", nil, &ci)
		return ci, err
	}
	metaLeader := func() int {
		for i, p := range c.procs {
			if !p.Running() {
				continue
			}
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := p.Client.Status(rctx)
			cancel()
			if err == nil && st.Meta.State == "Leader" {
				return i
			}
		}
		return -1
	}
	// Wait for a move in progress, then kill the node running it.
	var moving string
	eventually(t, "a replica move in progress", 60*time.Second, func() error {
		ci, err := info(1)
		if err != nil {
			return err
		}
		if ci.Move == nil {
			return fmt.Errorf("no move yet")
		}
		moving = fmt.Sprintf("group %d %s -> %s", ci.Move.Group, ci.Move.From, ci.Move.To)
		return nil
	})
	victim := metaLeader()
	if victim < 0 {
		t.Fatal("no metadata leader")
	}
	t.Logf("kill -9 %s (metadata leader) during the move of %s", c.procs[victim].ID, moving)
	if err := c.procs[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	survivor := (victim + 1) % len(c.procs)
	eventually(t, "moves carry on without the killed node", 60*time.Second, func() error {
		ci, err := info(survivor)
		if err != nil {
			return err
		}
		if ci.Move != nil && fmt.Sprintf("group %d %s -> %s", ci.Move.Group, ci.Move.From, ci.Move.To) == moving {
			return fmt.Errorf("still moving %s", moving)
		}
		return nil
	})
	if err := c.procs[victim].Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "placement settled", 2*time.Minute, func() error {
		ci, err := info(survivor)
		if err != nil {
			return err
		}
		if !ci.Balanced {
			return fmt.Errorf("not balanced: move %+v", ci.Move)
		}
		for _, n := range ci.Nodes {
			if len(n.Replicas) < 4 || len(n.Replicas) > 5 {
				return fmt.Errorf("%s holds %d replicas, want 4 or 5 (18 over 4 nodes)", n.ID, len(n.Replicas))
			}
		}
		return nil
	})
	// Every group's voters are its layout replicas, everywhere.
	ci, err := info(survivor)
	if err != nil {
		t.Fatal(err)
	}
	layout := map[uint32][]string{}
	for _, n := range ci.Nodes {
		for _, g := range n.Replicas {
			layout[g] = append(layout[g], n.ID)
		}
	}
	eventually(t, "raft configurations match the layout", time.Minute, func() error {
		for _, p := range c.procs {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := p.Client.Status(rctx)
			cancel()
			if err != nil {
				return err
			}
			for _, g := range st.Groups {
				if len(g.Voters) != 3 || len(layout[g.ID]) != 3 {
					b, _ := json.Marshal(g)
					return fmt.Errorf("%s: group %d: %s; layout %v", p.ID, g.ID, b, layout[g.ID])
				}
				for _, v := range g.Voters {
					found := false
					for _, id := range layout[g.ID] {
						found = found || id == v
					}
					if !found {
						return fmt.Errorf("%s: group %d voter %s not in layout %v", p.ID, g.ID, v, layout[g.ID])
					}
				}
			}
		}
		return nil
	})
	check := ctx(t, time.Minute)
	for k, v := range want {
		got, err := c.procs[3].Client.Get(check, k, "linearizable")
		if err != nil || string(got.Data) != v {
			t.Fatalf("%s = %q, %v; want %q", k, got.Data, err, v)
		}
	}
	eventually(t, "every replica verifies equal", time.Minute, func() error {
		res, err := c.procs[0].Client.Verify(check, client.VerifyOptions{NoRepair: true})
		if err != nil {
			return err
		}
		if !res.Agree {
			return fmt.Errorf("replicas disagree")
		}
		return nil
	})
}

// TestRemovedNodeStops: a fourth node joins, then is removed through
// another node. Its replicas move off, it leaves, learns so from the
// others and exits with status 0; started again on its data dir it
// refuses, with a message that says what to do. The cluster carries on.
func TestRemovedNodeStops(t *testing.T) {
	c := startCluster(t, 3)
	p, err := c.lc.StartNode(ctx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.procs = c.lc.Procs
	eventually(t, p.ID+" holds replicas", 60*time.Second, func() error {
		var ci clusterInfo
		if err := c.procs[0].Client.GetJSON(ctx(t, 2*time.Second), "/v1/cluster", nil, &ci); err != nil {
			return err
		}
		for _, n := range ci.Nodes {
			if n.ID == p.ID && len(n.Replicas) > 0 && ci.Balanced {
				return nil
			}
		}
		return fmt.Errorf("not yet: %+v", ci.Nodes)
	})
	if err := c.procs[1].Client.DoJSON(ctx(t, 10*time.Second), http.MethodDelete, "/v1/cluster/nodes/"+p.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, p.ID+" stopped by itself", 90*time.Second, func() error {
		if code, ok := p.ExitCode(); !ok {
			return fmt.Errorf("still running")
		} else if code != 0 {
			return fmt.Errorf("exited with %d", code)
		}
		return nil
	})
	if b, _ := os.ReadFile(p.LogPath); !strings.Contains(string(b), "removed from the cluster") {
		t.Fatalf("%s's log does not say it was removed", p.ID)
	}
	if err := p.Kill(); err != nil { // reap
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, p.ID+" refuses to start on its old data", 30*time.Second, func() error {
		if code, ok := p.ExitCode(); !ok {
			return fmt.Errorf("still running")
		} else if code == 0 {
			return fmt.Errorf("exited with 0")
		}
		return nil
	})
	if b, _ := os.ReadFile(p.LogPath); !strings.Contains(string(b), "start with an empty data dir and --join") {
		t.Fatalf("%s's log does not say how to join again:\n%s", p.ID, b)
	}
	for i := 0; i < 3; i++ {
		k := fmt.Sprintf("after/%d", i)
		if _, err := c.procs[i].Client.Put(ctx(t, 10*time.Second), k, []byte("v"), client.PutOptions{}); err != nil {
			t.Fatalf("put %s through %s after the removal: %v", k, c.procs[i].ID, err)
		}
	}
}
