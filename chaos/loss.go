package chaos

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/ringkv/ringkv/client"
)

// LossConfig describes a loss experiment: writes at a steady rate to one
// group while its leader is killed with SIGKILL, then restarted.
type LossConfig struct {
	Cluster *Cluster
	// Group is the group whose leader is killed and written to.
	Group uint32
	// Kills is how many times the leader is killed.
	Kills int
	// Rate is the writes per second sent to the group.
	Rate int
	// Replication is "sync" or "async".
	Replication string
	// Before is how long writes run before each kill.
	Before time.Duration
	// Cut, when set, cuts the leader's Raft traffic to its followers for
	// this long right before each kill (a slow or broken network: the
	// leader keeps appending, no follower receives).
	Cut      time.Duration
	Progress io.Writer
}

// LossReport is what a loss experiment found.
type LossReport struct {
	Replication string `json:"replication"`
	Kills       int    `json:"kills"`
	// Acked counts writes acknowledged (200 or 202); Lost lists those not
	// found afterwards.
	Acked int      `json:"acked"`
	Lost  []string `json:"lost"`
	// Window is the longest time between sending a write that was
	// acknowledged and lost, and the kill that lost it.
	Window time.Duration `json:"window_ns"`
	// LinkLatency is the one-way latency of the emulated links between
	// the nodes (LocalOptions.Link), when they had one.
	LinkLatency time.Duration `json:"link_latency_ns,omitempty"`
}

type ack struct {
	key string
	at  time.Time // when the write was sent
	// kill is the index of the first kill after it was sent.
	kill int
}

// MeasureLoss runs the experiment and reads back every acknowledged write.
// Each key is written once, with a value naming it, so a write is lost
// exactly when its key is missing or holds something else afterwards.
func MeasureLoss(ctx context.Context, cfg LossConfig) (LossReport, error) {
	rep := LossReport{Replication: cfg.Replication, Kills: cfg.Kills}
	c := cfg.Cluster
	need := cfg.Rate * cfg.Kills * (int(cfg.Before/time.Second) + 8)
	keys, err := keysInGroup(ctx, c, cfg.Group, fmt.Sprintf("loss/%s/%d/", cfg.Replication, time.Now().UnixNano()), need)
	if err != nil {
		return rep, err
	}
	var mu sync.Mutex
	var acks []ack
	next := 0
	kill := 0
	write := func(i int, key string) {
		// Any node: one that is down refuses, and that write is simply
		// not acknowledged.
		p := c.Procs[i%len(c.Procs)]
		// A write is attributed to the first kill after it was sent: one
		// sent just before a kill may be answered just after it.
		mu.Lock()
		sent, next := time.Now(), kill
		mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := p.Client.Put(wctx, key, []byte("v:"+key), client.PutOptions{Replication: cfg.Replication})
		if err == nil {
			mu.Lock()
			acks = append(acks, ack{key: key, at: sent, kill: next})
			mu.Unlock()
		}
	}
	// The writer: one write every 1/Rate, each in its own goroutine, so
	// the rate holds while some writes wait out the election.
	stop := make(chan struct{})
	var writers sync.WaitGroup
	go func() {
		t := time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if next < len(keys) {
					i, k := next, keys[next]
					next++
					writers.Add(1)
					go func() { defer writers.Done(); write(i, k) }()
				}
			}
		}
	}()
	kills := make([]time.Time, cfg.Kills)
	for k := 0; k < cfg.Kills; k++ {
		if !sleep(ctx, cfg.Before) {
			break
		}
		leader, err := killLeader(ctx, c, cfg, k, func() {
			mu.Lock()
			kills[k], kill = time.Now(), k+1
			mu.Unlock()
		})
		if err != nil {
			return rep, err
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%s: kill %d of %s done, %d writes acknowledged so far\n", cfg.Replication, k+1, c.Procs[leader].ID, len(acks))
		}
	}
	sleep(ctx, cfg.Before/2)
	close(stop)
	writers.Wait()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	rep.Acked = len(acks)
	if err := readBack(ctx, c, acks, kills, &rep); err != nil {
		return rep, err
	}
	sort.Strings(rep.Lost)
	return rep, nil
}

// killLeader waits for group cfg.Group's leader, cuts it off for cfg.Cut
// when asked, kills it (calling killed at that moment), heals, and once
// another node leads, starts it again and waits for it to rejoin. It
// returns the index of the node it killed.
func killLeader(ctx context.Context, c *Cluster, cfg LossConfig, k int, killed func()) (int, error) {
	leader := -1
	err := poll(ctx, 20*time.Millisecond, func() error {
		if leader = c.LeaderOf(ctx, cfg.Group); leader < 0 {
			return fmt.Errorf("group %d has no leader", cfg.Group)
		}
		return nil
	})
	if err != nil {
		return leader, fmt.Errorf("loss: %w", err)
	}
	if cfg.Cut > 0 {
		if err := c.Partition(ctx, leader); err != nil {
			return leader, err
		}
		sleep(ctx, cfg.Cut)
	}
	killed()
	if err := c.Procs[leader].Kill(); err != nil {
		return leader, err
	}
	if cfg.Cut > 0 {
		if err := c.Heal(ctx); err != nil {
			return leader, err
		}
	}
	err = poll(ctx, 20*time.Millisecond, func() error {
		if l := c.LeaderOf(ctx, cfg.Group); l < 0 || l == leader {
			return fmt.Errorf("no new leader")
		}
		return nil
	})
	if err != nil {
		return leader, fmt.Errorf("loss: no new leader after kill %d: %w", k+1, err)
	}
	if err := c.Procs[leader].Start(); err != nil {
		return leader, err
	}
	if err := c.WaitReady(ctx, 3); err != nil {
		return leader, fmt.Errorf("loss: node %s did not rejoin: %w", c.Procs[leader].ID, err)
	}
	return leader, nil
}

// readBack reads every acknowledged key back, linearizably, once every
// replica is back, and records in rep the ones lost and the loss window:
// how long before its kill the earliest lost write was sent.
func readBack(ctx context.Context, c *Cluster, acks []ack, kills []time.Time, rep *LossReport) error {
	for _, a := range acks {
		var v client.Value
		err := poll(ctx, 50*time.Millisecond, func() error {
			var err error
			v, err = c.Procs[0].Client.Get(ctx, a.key, "")
			if client.IsCode(err, "not_found") {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("loss: reading back %s: %w", a.key, err)
		}
		if string(v.Data) != "v:"+a.key {
			rep.Lost = append(rep.Lost, a.key)
			if a.kill < len(kills) && !kills[a.kill].IsZero() {
				rep.Window = max(rep.Window, kills[a.kill].Sub(a.at))
			}
		}
	}
	return nil
}

// keysInGroup returns n distinct keys with prefix that live in group g.
func keysInGroup(ctx context.Context, c *Cluster, g uint32, prefix string, n int) ([]string, error) {
	type result struct {
		key string
		ok  bool
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cands := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range cands {
				l, err := c.Procs[0].Client.Lookup(ctx, k)
				results <- result{k, uint32(l.Group) == g, err}
			}
		}()
	}
	go func() {
		defer close(cands)
		for i := 0; ; i++ {
			select {
			case cands <- fmt.Sprintf("%s%07d", prefix, i):
			case <-ctx.Done():
				return
			}
			if i > 100*n {
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	var out []string
	var err error
	for r := range results {
		if r.err != nil && err == nil {
			err = r.err
		}
		if r.ok && len(out) < n {
			out = append(out, r.key)
		}
		if len(out) == n || err != nil {
			break
		}
	}
	cancel()
	go func() { // drain the lookups still running
		for range results {
		}
	}()
	if err == nil && len(out) < n {
		err = fmt.Errorf("loss: found %d of %d keys in group %d", len(out), n, g)
	}
	return out, err
}
