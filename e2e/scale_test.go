package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
)

// TestGrowAndShrinkUnderLoad runs the fault harness's 16 clients and its
// checker on real processes while the cluster grows from 3 to 5 nodes and
// from 3 to 6 groups, then shrinks back: the history is linearizable, no
// acknowledged write is lost, every replica verifies equal, and each step
// moves about the ideal share (keys for a ring change, replicas for a node
// change).
func TestGrowAndShrinkUnderLoad(t *testing.T) {
	trackSources()
	dir := t.TempDir()
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := chaos.StartLocal(sctx, chaos.LocalOptions{Bin: bin.ringkvd, Dir: dir, Nodes: 3, Args: chaos.NodeArgs(3)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	rep, err := chaos.Run(context.Background(), chaos.Config{Cluster: c, Groups: 3, Duration: 40 * time.Second,
		Nemesis: []string{chaos.FaultScale}, Recover: time.Second, Workers: 16, OutDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	rep.Print(&report)
	t.Logf("\n%s", report.String())
	if !rep.OK() {
		t.Fatal("checks failed")
	}
	if rep.FinalNodes != 3 || rep.FinalGroups != 3 {
		t.Fatalf("the run ended with %d nodes and %d groups, want 3 and 3", rep.FinalNodes, rep.FinalGroups)
	}
	want := []string{"add node", "add node", "add group", "add group", "add group",
		"remove group", "remove group", "remove group", "remove node", "remove node"}
	if len(rep.Reshards) < len(want) {
		t.Fatalf("only %d steps in the run; a full cycle has %d", len(rep.Reshards), len(want))
	}
	for i, w := range want {
		s := rep.Reshards[i]
		if !strings.HasPrefix(s.Change, w) {
			t.Fatalf("step %d is %q, want %s", i, s.Change, w)
		}
		switch {
		case s.Replicas && strings.HasPrefix(w, "add"):
			// A new node receives about its share of the replicas,
			// within one replica either way.
			if ideal := s.IdealShare * float64(s.TotalKeys); s.MovedKeys == 0 || float64(s.MovedKeys) > ideal+1 {
				t.Errorf("%s moved %d of %d replicas, ideal %.1f", s.Change, s.MovedKeys, s.TotalKeys, ideal)
			}
		case s.Replicas:
			if s.MovedShare > s.IdealShare+1e-9 {
				t.Errorf("%s moved %.3f of the replicas, it held %.3f", s.Change, s.MovedShare, s.IdealShare)
			}
		case s.MovedShare > 1.2*s.IdealShare:
			t.Errorf("%s moved %.3f of the hash space, ideal %.3f", s.Change, s.MovedShare, s.IdealShare)
		}
	}
}
