package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/bench"
)

// cmdBench runs the closed-loop workload generator.
func cmdBench(ctx context.Context, addr string, args []string, out io.Writer) error {
	cfg := bench.DefaultConfig()
	var endpoints string
	var asJSON bool
	pos, err := subFlags("bench", args, func(fs *flag.FlagSet) {
		fs.StringVar(&endpoints, "endpoints", addr, "")
		fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "")
		fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "")
		fs.Int64Var(&cfg.Ops, "ops", 0, "")
		fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "")
		fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "")
		fs.Float64Var(&cfg.Reads, "reads", 0, "")
		fs.StringVar(&cfg.Dist, "dist", cfg.Dist, "")
		fs.StringVar(&cfg.Replication, "replication", "", "")
		fs.StringVar(&cfg.Consistency, "consistency", "", "")
		fs.StringVar(&cfg.KeyPrefix, "prefix", cfg.KeyPrefix, "")
		fs.BoolVar(&asJSON, "json", false, "")
	})
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errors.New("usage: ringkv bench [--endpoints URLS] [--concurrency N] [--duration D | --ops N] [--value-size B] [--keys N] [--reads F] [--dist uniform|zipfian] [--replication sync|async] [--consistency C] [--json]")
	}
	if cfg.Ops > 0 && !flagGiven(args, "duration") {
		cfg.Duration = 0
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.Endpoints = append(cfg.Endpoints, e)
		}
	}
	cfg.Progress = func(p bench.Progress) {
		fmt.Fprintf(os.Stderr, "\r%4.0fs  %9d ops  %8.0f ops/s  %d errors ", p.Elapsed.Seconds(), p.Ops, float64(p.Ops)/p.Elapsed.Seconds(), p.Errors)
	}
	res, err := bench.Run(ctx, cfg)
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
		}{viewOf(cfg), res}); err != nil {
			return err
		}
	} else {
		printBench(out, cfg, res)
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
	if r.All.FirstError != "" {
		fmt.Fprintf(out, "first error: %s\n", r.All.FirstError)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
