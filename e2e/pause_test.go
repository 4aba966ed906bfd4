package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// TestPausedLeaderServesNoStaleRead pauses a group leader (SIGSTOP) for
// longer than the election timeout, lets the others elect a new leader and
// acknowledge a new value, then resumes the old leader with reads already
// queued at it. It wakes up believing it still leads; a linearizable read it
// answers must still not return the replaced value.
func TestPausedLeaderServesNoStaleRead(t *testing.T) {
	c := startCluster(t, 3)
	const g = 1
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprintf("pause/%d", i)
		var l struct {
			Group uint32 `json:"group"`
		}
		if err := c.procs[0].Client.GetJSON(ctx(t, 5*time.Second), "/v1/ring/lookup", map[string][]string{"key": {key}}, &l); err != nil {
			t.Fatal(err)
		}
		if l.Group == g {
			break
		}
	}
	if _, err := c.procs[0].Client.Put(ctx(t, 10*time.Second), key, []byte("v1"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	old := c.leaderOf(g)
	paused := c.procs[old]
	if err := paused.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			paused.Resume()
		}
	}()
	other := c.procs[(old+1)%3]
	eventually(t, "majority acknowledges v2 while the leader is paused", 30*time.Second, func() error {
		_, err := other.Client.Put(ctx(t, 3*time.Second), key, []byte("v2"), client.PutOptions{})
		return err
	})
	// Queue reads at the paused node, then resume it.
	var wg sync.WaitGroup
	results := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := paused.Client.Get(ctx(t, 15*time.Second), key, "linearizable")
			if err == nil {
				results <- string(v.Data)
			}
		}()
	}
	// Give the requests time to reach the kernel's accept queue of the
	// stopped process; they cannot be observed from here.
	<-time.After(300 * time.Millisecond)
	paused.Resume()
	resumed = true
	wg.Wait()
	close(results)
	n := 0
	for v := range results {
		n++
		if v != "v2" {
			t.Fatalf("resumed old leader answered a linearizable read with %q after v2 was acknowledged", v)
		}
	}
	t.Logf("%d of 20 reads queued at the resumed leader answered, all v2", n)
}
