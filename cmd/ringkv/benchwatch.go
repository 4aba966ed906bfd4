package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/client"
)

// benchWatchCmd is ringkv bench watch: what open watch streams cost.
func benchWatchCmd(a *app) *cobra.Command {
	var bf benchFlags
	var list, elsewhere string
	var rounds, idle int
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "What watchers cost: writes/s with N open change streams on the written prefix, or a node's memory per idle stream",
		Long: `bench watch runs the bench workload with each number of --watchers open on
its prefix (spread over the endpoints, each stream consuming every change),
in --rounds alternating rounds, and prints writes/s, latency and the
changes the streams delivered, per number of watchers (medians over the
rounds). The streams run in this process: on a machine shared with the
nodes they take their CPU too.

--idle N instead opens N streams on a prefix no one writes, on the first
endpoint, and reports what that node's memory and goroutines grew by per
stream (from its /metrics).`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bf.finish(cmd.Flags(), a); err != nil {
				return err
			}
			if idle > 0 {
				return idleWatchCost(cmd.Context(), a, bf.cfg.Endpoints[0], idle, cmd.OutOrStdout())
			}
			var counts []int
			for _, s := range splitList(list) {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					return fmt.Errorf("--watchers %q: want numbers of streams, such as 0,100,1000", s)
				}
				counts = append(counts, n)
			}
			if len(counts) == 0 || rounds < 1 {
				return fmt.Errorf("--watchers needs at least one number and --rounds at least 1")
			}
			return watchCost(cmd.Context(), a, bf.cfg, counts, rounds, elsewhere, cmd.OutOrStdout())
		},
	}
	bf.define(cmd.Flags())
	cmd.Flags().StringVar(&list, "watchers", "0,100,1000", "numbers of open streams to compare")
	cmd.Flags().IntVar(&rounds, "rounds", 3, "rounds, each running every number once, in alternating order")
	cmd.Flags().IntVar(&idle, "idle", 0, "instead: open this many idle streams and report memory per stream")
	cmd.Flags().StringVar(&elsewhere, "watch-prefix", "", "watch this prefix instead of the one written (streams that see none of the writes)")
	return cmd
}

// watchSet is a number of open streams and the changes they delivered.
type watchSet struct {
	events atomic.Int64
	opened atomic.Int64
	cancel context.CancelFunc
}

// openWatchers opens n streams on prefix over the endpoints and returns
// once each has delivered a write made after it opened.
func openWatchers(ctx context.Context, a *app, endpoints []string, n int, prefix string) (*watchSet, error) {
	ws := &watchSet{}
	wctx, cancel := context.WithCancel(ctx)
	ws.cancel = cancel
	if n == 0 {
		return ws, nil
	}
	opts, err := a.options()
	if err != nil {
		cancel()
		return nil, err
	}
	clients := make([]*client.Client, len(endpoints))
	for i, e := range endpoints {
		clients[i] = client.New(e, opts...)
	}
	for i := 0; i < n; i++ {
		events := clients[i%len(clients)].Watch(wctx, prefix, client.WatchOptions{})
		go func() {
			first := true
			for ev := range events {
				if ev.Err == nil {
					ws.events.Add(1)
					if first {
						ws.opened.Add(1)
						first = false
					}
				}
			}
		}()
	}
	sentinel := prefix + "watchers-open"
	deadline := time.Now().Add(2 * time.Minute)
	for ws.opened.Load() < int64(n) {
		if time.Now().After(deadline) {
			cancel()
			return nil, fmt.Errorf("only %d of %d streams opened in 2 minutes", ws.opened.Load(), n)
		}
		if _, err := clients[0].Put(ctx, sentinel, []byte("x"), client.PutOptions{}); err != nil {
			cancel()
			return nil, err
		}
		select {
		case <-time.After(200 * time.Millisecond): // the streams' time to deliver the sentinel
		case <-ctx.Done():
			cancel()
			return nil, ctx.Err()
		}
	}
	ws.events.Store(0)
	return ws, nil
}

// watchRound is one measurement with a number of streams open.
type watchRound struct {
	watchers     int
	writesPerSec float64
	p50, p99     time.Duration
	delivered    float64 // changes delivered per second, all streams
	errors       uint64
}

// watchCost measures the workload with each number of streams open.
func watchCost(ctx context.Context, a *app, cfg bench.Config, counts []int, rounds int, elsewhere string, out io.Writer) error {
	byCount := map[int][]watchRound{}
	for r := 0; r < rounds; r++ {
		order := slices.Clone(counts)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, n := range order {
			c := cfg
			c.KeyPrefix = fmt.Sprintf("%swatch-%d-%d/", cfg.KeyPrefix, r, n)
			watched := c.KeyPrefix
			if elsewhere != "" {
				watched = fmt.Sprintf("%s%d-%d/", elsewhere, r, n)
			}
			ws, err := openWatchers(ctx, a, cfg.Endpoints, n, watched)
			if err != nil {
				return err
			}
			res, err := bench.Run(ctx, c)
			delivered := ws.events.Load()
			ws.cancel()
			if err != nil {
				return err
			}
			round := watchRound{watchers: n, writesPerSec: res.Writes.Throughput, p50: res.Writes.P50, p99: res.Writes.P99,
				delivered: float64(delivered) / res.Elapsed.Seconds(), errors: res.Writes.Errors}
			byCount[n] = append(byCount[n], round)
			fmt.Fprintf(os.Stderr, "round %d, %d watchers: %.0f writes/s, %.0f changes delivered/s\n", r+1, n, round.writesPerSec, round.delivered)
		}
	}
	what := "on the written prefix"
	if elsewhere != "" {
		what = "on another prefix"
	}
	fmt.Fprintf(out, "%d clients, %s rounds x %d, %d-byte values, against %s; streams %s, in this process\n",
		cfg.Concurrency, cfg.Duration, rounds, cfg.ValueSize, strings.Join(cfg.Endpoints, ","), what)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "watchers\twrites/s\tvs none\tp50\tp99\tdelivered/s\terrors\t")
	base := 0.0
	for _, n := range counts {
		m := medianRound(byCount[n])
		if n == counts[0] {
			base = m.writesPerSec
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.2fx\t%s\t%s\t%.0f\t%d\t\n", n, m.writesPerSec, m.writesPerSec/max(base, 1), ms(m.p50), ms(m.p99), m.delivered, m.errors)
	}
	return tw.Flush()
}

// medianRound is the round of median writes/s.
func medianRound(rs []watchRound) watchRound {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b watchRound) int {
		switch {
		case a.writesPerSec < b.writesPerSec:
			return -1
		case a.writesPerSec > b.writesPerSec:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// idleWatchCost opens n idle streams on one node and reports what its
// memory and goroutines grew by per stream.
func idleWatchCost(ctx context.Context, a *app, endpoint string, n int, out io.Writer) error {
	opts, err := a.options()
	if err != nil {
		return err
	}
	cl := client.New(endpoint, opts...)
	before, err := nodeMetrics(ctx, cl)
	if err != nil {
		return err
	}
	ws, err := openWatchers(ctx, a, []string{endpoint}, n, fmt.Sprintf("idle-%d/", time.Now().UnixNano()))
	if err != nil {
		return err
	}
	defer ws.cancel()
	after, err := nodeMetrics(ctx, cl)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d idle streams on %s:\n", n, endpoint)
	for _, m := range []string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"} {
		fmt.Fprintf(out, "  %-32s %14.0f -> %14.0f   %10.1f per stream\n", m, before[m], after[m], (after[m]-before[m])/float64(n))
	}
	return nil
}

// nodeMetrics reads the process and Go runtime gauges of a node's /metrics.
func nodeMetrics(ctx context.Context, cl *client.Client) (map[string]float64, error) {
	resp, err := cl.Stream(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (strings.HasPrefix(f[0], "process_") || strings.HasPrefix(f[0], "go_")) {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out, sc.Err()
}
