package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/ringkv/ringkv/client"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/chaos"
)

// benchFlags are the flags every bench command takes.
type benchFlags struct {
	cfg       bench.Config
	endpoints string
	asJSON    bool
}

func (b *benchFlags) define(fs *flag.FlagSet, addr string) {
	b.cfg = bench.DefaultConfig()
	fs.StringVar(&b.endpoints, "endpoints", addr, "")
	fs.IntVar(&b.cfg.Concurrency, "concurrency", b.cfg.Concurrency, "")
	fs.DurationVar(&b.cfg.Duration, "duration", b.cfg.Duration, "")
	fs.Int64Var(&b.cfg.Ops, "ops", 0, "")
	fs.IntVar(&b.cfg.ValueSize, "value-size", b.cfg.ValueSize, "")
	fs.IntVar(&b.cfg.Keys, "keys", b.cfg.Keys, "")
	fs.Float64Var(&b.cfg.Reads, "reads", 0, "")
	fs.StringVar(&b.cfg.Dist, "dist", b.cfg.Dist, "")
	fs.StringVar(&b.cfg.Replication, "replication", "", "")
	fs.StringVar(&b.cfg.Consistency, "consistency", "", "")
	fs.StringVar(&b.cfg.KeyPrefix, "prefix", b.cfg.KeyPrefix, "")
	fs.BoolVar(&b.asJSON, "json", false, "")
}

// finish applies what the flags imply once parsed.
func (b *benchFlags) finish(args []string) {
	if b.cfg.Ops > 0 && !flagGiven(args, "duration") {
		b.cfg.Duration = 0
	}
	b.cfg.Endpoints = splitList(b.endpoints)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// cmdBench runs the closed-loop workload generator.
// copts (the node's TLS, a token) go to every client it makes.
func cmdBench(ctx context.Context, addr string, copts []client.Option, args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "compare" {
		return cmdBenchCompare(ctx, addr, copts, args[1:], out)
	}
	if len(args) > 0 && args[0] == "loss" {
		return cmdBenchLoss(ctx, args[1:], out)
	}
	var bf benchFlags
	pos, err := subFlags("bench", args, func(fs *flag.FlagSet) { bf.define(fs, addr) })
	if err != nil {
		return err
	}
	bf.cfg.ClientOptions = copts
	cfg, asJSON := &bf.cfg, bf.asJSON
	if len(pos) != 0 {
		return errors.New("usage: ringkv bench [--endpoints URLS] [--concurrency N] [--duration D | --ops N] [--value-size B] [--keys N] [--reads F] [--dist uniform|zipfian|sequential] [--replication sync|async] [--consistency C] [--json]")
	}
	bf.finish(args)
	cfg.Progress = func(p bench.Progress) {
		fmt.Fprintf(os.Stderr, "\r%4.0fs  %9d ops  %8.0f ops/s  %d errors ", p.Elapsed.Seconds(), p.Ops, float64(p.Ops)/p.Elapsed.Seconds(), p.Errors)
	}
	res, err := bench.Run(ctx, *cfg)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Config benchConfigView `json:"config"`
			bench.Result
		}{viewOf(*cfg), res}); err != nil {
			return err
		}
	} else {
		printBench(out, *cfg, res)
	}
	if res.All.Ops == 0 {
		return fmt.Errorf("no operation succeeded: %s", res.All.FirstError)
	}
	return nil
}

func flagGiven(args []string, name string) bool {
	for _, a := range args {
		if a == "--"+name || a == "-"+name || strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}

// benchConfigView is the workload as printed with --json.
type benchConfigView struct {
	Endpoints   []string `json:"endpoints"`
	Concurrency int      `json:"concurrency"`
	Duration    string   `json:"duration,omitempty"`
	Ops         int64    `json:"ops,omitempty"`
	ValueSize   int      `json:"value_size"`
	Keys        int      `json:"keys"`
	Reads       float64  `json:"reads"`
	Dist        string   `json:"dist"`
	Replication string   `json:"replication,omitempty"`
	Consistency string   `json:"consistency,omitempty"`
}

func viewOf(c bench.Config) benchConfigView {
	v := benchConfigView{Endpoints: c.Endpoints, Concurrency: c.Concurrency, Ops: c.Ops, ValueSize: c.ValueSize,
		Keys: c.Keys, Reads: c.Reads, Dist: c.Dist, Replication: c.Replication, Consistency: c.Consistency}
	if c.Duration > 0 {
		v.Duration = c.Duration.String()
	}
	return v
}

func printBench(out io.Writer, cfg bench.Config, r bench.Result) {
	fmt.Fprintf(out, "%d clients, %s, %d-byte values, %d keys (%s), %.0f%% reads, against %s\n",
		cfg.Concurrency, r.Elapsed.Round(time.Millisecond), cfg.ValueSize, cfg.Keys, cfg.Dist, 100*cfg.Reads, strings.Join(cfg.Endpoints, ","))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\terrors\tops/s\tp50\tp90\tp99\tp99.9\tmax\t")
	row := func(name string, s bench.OpStats) {
		if s.Ops == 0 && s.Errors == 0 {
			return
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", name, s.Ops, s.Errors, s.Throughput,
			ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	row("write", r.Writes)
	row("read", r.Reads)
	row("all", r.All)
	tw.Flush()
	fmt.Fprintf(out, "longest stall of one client (no operation succeeding): %s\n", ms(r.MaxStall))
	if r.All.FirstError != "" {
		fmt.Fprintf(out, "first error: %s\n", r.All.FirstError)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// cmdBenchCompare runs the workload with sync and async writes on the same
// cluster, alternating rounds, and prints them side by side.
func cmdBenchCompare(ctx context.Context, addr string, copts []client.Option, args []string, out io.Writer) error {
	var bf benchFlags
	var rounds int
	var plot, asyncEndpoints string
	pos, err := subFlags("bench compare", args, func(fs *flag.FlagSet) {
		bf.define(fs, addr)
		fs.IntVar(&rounds, "rounds", 3, "")
		fs.StringVar(&plot, "plot", "", "")
		fs.StringVar(&asyncEndpoints, "async-endpoints", "", "")
	})
	if err != nil {
		return err
	}
	bf.cfg.ClientOptions = copts
	if len(pos) != 0 || bf.cfg.Replication != "" {
		return errors.New("usage: ringkv bench compare [bench flags, without --replication] [--async-endpoints URLS] [--rounds N] [--plot FILE.svg] [--json]")
	}
	if !flagGiven(args, "duration") && bf.cfg.Ops == 0 {
		bf.cfg.Duration = 5 * time.Second
	}
	bf.finish(args)
	// With --async-endpoints the async rounds run on a second cluster (the
	// compose "async" profile); otherwise both run on the same one.
	asyncEps := splitList(asyncEndpoints)
	where := strings.Join(bf.cfg.Endpoints, ",")
	if len(asyncEps) > 0 {
		where = "sync on " + where + ", async on " + strings.Join(asyncEps, ",")
	}
	modes := []bench.Mode{
		{Name: "sync", Apply: func(c *bench.Config) { c.Replication = "sync" }},
		{Name: "async", Apply: func(c *bench.Config) {
			c.Replication = "async"
			if len(asyncEps) > 0 {
				c.Endpoints = asyncEps
			}
		}},
	}
	res, err := bench.Compare(ctx, bf.cfg, modes, rounds, func(round int, mode string, r bench.Result) {
		fmt.Fprintf(os.Stderr, "round %d %-5s %8.0f writes/s  p99 %s  errors %d\n", round+1, mode, r.All.Throughput, ms(r.All.P99), r.All.Errors)
	})
	if err != nil {
		return err
	}
	if plot != "" {
		f, err := os.Create(plot)
		if err != nil {
			return err
		}
		title := fmt.Sprintf("ringkv sync vs async: %d clients, %d-byte values, %d keys, %d rounds", bf.cfg.Concurrency, bf.cfg.ValueSize, bf.cfg.Keys, rounds)
		if err := bench.WriteSVG(f, title, res); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if bf.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Config benchConfigView    `json:"config"`
			Rounds int                `json:"rounds"`
			Modes  []bench.ModeResult `json:"modes"`
		}{viewOf(bf.cfg), rounds, res})
	}
	fmt.Fprintf(out, "%d clients, %d-byte values, %d keys (%s), %.0f%% reads, %d alternating rounds per mode, %s\n",
		bf.cfg.Concurrency, bf.cfg.ValueSize, bf.cfg.Keys, bf.cfg.Dist, 100*bf.cfg.Reads, rounds, where)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tops\terrors\tops/s\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, m := range res {
		s := m.Stats
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", m.Name, s.Ops, s.Errors, s.Throughput, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max))
	}
	a, b := res[1].Stats, res[0].Stats
	ratio := func(x, y time.Duration) string { return fmt.Sprintf("%.2fx", float64(x)/float64(max(y, 1))) }
	fmt.Fprintf(tw, "async/sync\t\t\t%.2fx\t%s\t%s\t%s\t%s\t%s\t\n", a.Throughput/max(b.Throughput, 1e-9),
		ratio(a.P50, b.P50), ratio(a.P90, b.P90), ratio(a.P99, b.P99), ratio(a.P999, b.P999), ratio(a.Max, b.Max))
	tw.Flush()
	if plot != "" {
		fmt.Fprintf(out, "plot written to %s\n", plot)
	}
	return nil
}

// cmdBenchLoss writes steadily to one group while killing its leader with
// SIGKILL, for sync and then async writes, then reads back every
// acknowledged write. Sync must lose none. It starts 3 local nodes itself,
// or works on the compose containers or on nodes controlled by commands.
func cmdBenchLoss(ctx context.Context, args []string, out io.Writer) error {
	var tf targetFlags
	var kills, rate int
	var before, cut time.Duration
	var dir string
	var asJSON bool
	pos, err := subFlags("bench loss", args, func(fs *flag.FlagSet) {
		tf.define(fs)
		fs.IntVar(&kills, "kills", 3, "")
		fs.IntVar(&rate, "rate", 200, "")
		fs.DurationVar(&before, "before", time.Second, "")
		fs.DurationVar(&cut, "cut", 0, "")
		fs.StringVar(&dir, "dir", "", "")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil || len(pos) != 0 || kills < 1 || rate < 1 || before <= 0 {
		return errors.New("usage: ringkv bench loss [--kills N] [--rate WRITES/S] [--before D] [--cut D] [--target local|compose|endpoints] [--endpoints URLS] [--containers NAMES] [--kill-cmd CMD --start-cmd CMD] [--ringkvd PATH] [--dir DIR] [--json]")
	}
	if err := tf.check(); err != nil {
		return fmt.Errorf("bench loss: %w", err)
	}
	if !tf.controls() {
		return errors.New("bench loss: attached nodes need --kill-cmd and --start-cmd to be killed")
	}
	keep := dir != ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ringkv-loss-"); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cluster, desc, err := tf.open(sctx, dir, 3)
	if err != nil {
		return fmt.Errorf("bench loss: starting the cluster: %w (logs in %s)", err, dir)
	}
	defer cluster.Stop()
	fmt.Fprintf(os.Stderr, "bench loss: %s, %d kills of group 1's leader per mode, %d writes/s, leader cut off for %v first; files in %s\n", desc, kills, rate, cut, dir)
	var reps []chaos.LossReport
	for _, mode := range []string{"sync", "async"} {
		rep, err := chaos.MeasureLoss(ctx, chaos.LossConfig{Cluster: cluster, Group: 1, Kills: kills, Rate: rate,
			Replication: mode, Before: before, Cut: cut, Progress: os.Stderr})
		if err != nil {
			return fmt.Errorf("bench loss (%s): %w (logs in %s)", mode, err, dir)
		}
		reps = append(reps, rep)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reps); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tkills\tacknowledged\tlost\tloss window\t")
		for _, r := range reps {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t\n", r.Replication, r.Kills, r.Acked, len(r.Lost), ms(r.Window))
		}
		tw.Flush()
		for _, r := range reps {
			for i, k := range r.Lost {
				if i == 5 {
					fmt.Fprintf(out, "  ... %d more\n", len(r.Lost)-5)
					break
				}
				fmt.Fprintf(out, "  %s lost %s\n", r.Replication, k)
			}
		}
	}
	cluster.Stop()
	if len(reps[0].Lost) > 0 {
		return fmt.Errorf("bench loss: %d acknowledged sync writes lost (logs in %s)", len(reps[0].Lost), dir)
	}
	if !keep {
		os.RemoveAll(dir)
	}
	return nil
}
