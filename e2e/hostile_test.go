package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
)

// The hostile suite against real processes: a cluster with one data group
// (where the weight of the only group once panicked every node, at every
// restart) and one with three. Every case must be refused as it says, and
// the cluster must stay ready, keep its data and take writes; then every
// node must come back from a restart, and the ring must still change (an
// absurd mover term once locked every later ring change out).
func TestHostileSuite(t *testing.T) {
	for _, groups := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d groups", groups), func(t *testing.T) {
			c := startCluster(t, 3, "--groups", fmt.Sprint(groups))
			c.waitReady(3)
			var endpoints []string
			for _, p := range c.procs {
				endpoints = append(endpoints, p.URL())
			}
			results, err := chaos.Hostile(ctx(t, 5*time.Minute), endpoints, chaos.HostileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(results) < 15 {
				t.Fatalf("%d cases ran, want every one", len(results))
			}
			for _, r := range results {
				if !r.OK() {
					t.Errorf("%s: sent %s, got %s: %s", r.Name, r.Sent, r.Got, r.Error)
				}
			}
			// Nothing refused was stored: every node restarts and serves.
			for i, p := range c.procs {
				if err := p.Kill(); err != nil {
					t.Fatal(err)
				}
				if err := p.Start(); err != nil {
					t.Fatal(err)
				}
				c.waitReady(3)
				if _, err := p.Client.Put(ctx(t, 10*time.Second), fmt.Sprintf("after-restart-%d", i), []byte("x"), client.PutOptions{}); err != nil {
					t.Fatalf("write through %s after its restart: %v", p.ID, err)
				}
			}
			// The ring still changes: add a group and wait for it to be done.
			var added struct {
				Change struct {
					Add struct {
						Group uint32 `json:"group"`
					} `json:"add"`
				} `json:"change"`
			}
			if err := c.procs[0].Client.PostJSON(ctx(t, 30*time.Second), "/v1/ring/groups", &added); err != nil {
				t.Fatalf("adding a group after the suite: %v", err)
			}
			eventually(t, "the ring change after the suite finishes", 90*time.Second, func() error {
				var ring struct {
					Migration *struct{} `json:"migration"`
					Groups    []struct {
						ID uint32 `json:"id"`
					} `json:"groups"`
				}
				if err := c.procs[1].Client.GetJSON(ctx(t, 5*time.Second), "/v1/ring", url.Values{}, &ring); err != nil {
					return err
				}
				if ring.Migration != nil || len(ring.Groups) != groups+1 {
					return fmt.Errorf("%d groups, migration %v", len(ring.Groups), ring.Migration != nil)
				}
				return nil
			})
		})
	}
}
