package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
)

// TestHarnessCatchesBrokenBuilds shows that the chaos harness can fail: a
// ringkvd built with the ringkv_broken tag serves reads from local state,
// or acknowledges writes before they commit, and the harness must report a
// linearizability violation or lost acknowledged writes. Release builds
// cannot enable either behaviour.
func TestHarnessCatchesBrokenBuilds(t *testing.T) {
	trackSources()
	brokenBin := filepath.Join(t.TempDir(), "ringkvd-broken")
	out, err := exec.Command("go", "build", "-tags", "ringkv_broken", "-o", brokenBin, "../cmd/ringkvd").CombinedOutput()
	if err != nil {
		t.Fatalf("building the broken ringkvd: %v\n%s", err, out)
	}
	watchCaught := func(r chaos.Report) bool { return len(r.WatchProblems) > 0 }
	tests := []struct {
		mode     string
		nemesis  []string
		caught   func(chaos.Report) bool
		watchers int
	}{
		{"stale-reads", []string{chaos.FaultPartition, chaos.FaultPause}, func(r chaos.Report) bool { return !r.Linearizable }, 0},
		{"ack-before-commit", []string{chaos.FaultKill, chaos.FaultPause}, func(r chaos.Report) bool { return !r.Linearizable || len(r.Lost) > 0 }, 0},
		// Change streams that drop or repeat a change now and then.
		{"watch-drop", []string{chaos.FaultKill}, watchCaught, 2},
		{"watch-repeat", []string{chaos.FaultKill}, watchCaught, 2},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := chaos.StartLocal(sctx, chaos.LocalOptions{Bin: brokenBin, Dir: dir, Nodes: 3,
				Args: chaos.NodeArgs(3), Env: []string{"RINGKV_BROKEN=" + tt.mode}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			rep, err := chaos.Run(context.Background(), chaos.Config{Cluster: c, Groups: 3, Duration: 20 * time.Second,
				Nemesis: tt.nemesis, FaultFor: 2 * time.Second, Recover: time.Second, Workers: 8, OutDir: dir, Watchers: tt.watchers})
			if err != nil {
				t.Fatal(err)
			}
			var report bytes.Buffer
			rep.Print(&report)
			if !tt.caught(rep) {
				t.Fatalf("the harness did not catch %s:\n%s", tt.mode, report.String())
			}
			if !rep.Linearizable {
				if _, err := os.Stat(rep.Visualization); err != nil {
					t.Errorf("violation reported without its visualization: %v", err)
				}
			}
			t.Logf("caught %s:\n%s", tt.mode, report.String())
		})
	}
}
