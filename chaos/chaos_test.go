package chaos_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/raftnode/raftnodetest"
)

// TestLinearizableUnderPartitions runs the workload against an in-process
// 3-node cluster while a nemesis cuts the leader of a random group off from
// its followers (clients can still reach it) and heals, then checks every
// key's history and that every acknowledged write of the set workload is
// present.
func TestLinearizableUnderPartitions(t *testing.T) {
	c := raftnodetest.Start(t, raftnodetest.Options{SnapshotThreshold: 200, TrailingLogs: 50})
	var clients []*client.Client
	for _, m := range c.Members {
		clients = append(clients, client.New(m.URL()))
	}
	w := chaos.Workload{Clients: clients, Workers: 8, Keys: 6, OpsPerKey: 150, OpTimeout: 3 * time.Second}
	h := chaos.NewHistory()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	done := make(chan chaos.Stats, 1)
	go func() { done <- w.Run(ctx, h) }()

	faults := 0
	rng := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(1500 * time.Millisecond)
	defer tick.Stop()
	partitioned := -1
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-tick.C:
			if partitioned >= 0 {
				c.Heal()
				partitioned = -1
				continue
			}
			g := base.GroupID(1 + rng.IntN(3))
			for i, m := range c.Members {
				if c.GroupStatus(i, g).Leader == m.ID && c.GroupStatus(i, g).State == "Leader" {
					partitioned = i
				}
			}
			if partitioned >= 0 {
				c.Partition(partitioned)
				faults++
			}
		}
	}
	c.Heal()
	st := <-done
	if st.Ops < 200 || faults < 2 {
		t.Fatalf("run too small to mean anything: %d operations, %d partitions", st.Ops, faults)
	}
	v, err := chaos.Check(h.Operations(), time.Minute, filepath.Join(t.TempDir(), "violation.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Linearizable {
		t.Fatalf("history of %d operations is not linearizable (unknown=%v); see %s", v.Operations, v.Unknown, v.Visualization)
	}
	c.WaitReady()
	for _, k := range st.Acked {
		got, err := clients[0].Get(context.Background(), k, "linearizable")
		if err != nil || string(got.Data) != k {
			t.Fatalf("acknowledged write %q lost: %q, %v", k, got.Data, err)
		}
	}
	t.Logf("%d operations checked (%d unknown outcome, %d refused), %d partitions, %d acknowledged set writes all present",
		st.Ops, st.Unknown, st.Refused, faults, len(st.Acked))
}
