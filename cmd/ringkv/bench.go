package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/client"
	"github.com/ringkv/ringkv/links"
)

// benchFlags are the flags every bench command takes.
type benchFlags struct {
	cfg    bench.Config
	asJSON bool
}

func (b *benchFlags) define(fs *pflag.FlagSet) {
	b.cfg = bench.DefaultConfig()
	fs.StringVar(&b.cfg.Client.Routing, "routing", client.RouteDirect, "direct: each key's request to its group's leader; any: to the node the balancer picks, which forwards")
	fs.StringVar(&b.cfg.Client.Balancer, "balancer", client.BalanceRoundRobin, "how requests that any node can serve are spread: "+strings.Join(client.Balancers, ", "))
	fs.IntVar(&b.cfg.Concurrency, "concurrency", b.cfg.Concurrency, "concurrent clients, each one request at a time (closed loop)")
	fs.DurationVar(&b.cfg.Duration, "duration", b.cfg.Duration, "how long to run")
	fs.Int64Var(&b.cfg.Ops, "ops", 0, "run this many operations instead of for --duration")
	fs.IntVar(&b.cfg.ValueSize, "value-size", b.cfg.ValueSize, "bytes per value written")
	fs.IntVar(&b.cfg.Keys, "keys", b.cfg.Keys, "distinct keys the workload touches")
	fs.Float64Var(&b.cfg.Reads, "reads", 0, "fraction of operations that are reads, 0 to 1")
	fs.StringVar(&b.cfg.Dist, "dist", b.cfg.Dist, "key distribution: uniform, zipfian or sequential")
	fs.StringVar(&b.cfg.Replication, "replication", "", "write acknowledgement: sync or async (default: the node's)")
	fs.StringVar(&b.cfg.Consistency, "consistency", "", "reads: "+consistencyHelp)
	fs.StringVar(&b.cfg.KeyPrefix, "prefix", b.cfg.KeyPrefix, "prefix of the keys written")
	fs.BoolVar(&b.asJSON, "json", false, "print the results as JSON")
}

// finish applies what the flags imply once parsed: --ops alone runs
// without a time bound, the endpoints are --endpoints or else --addr, and
// the client takes the global TLS, token and timeout flags.
func (b *benchFlags) finish(fs *pflag.FlagSet, a *app) error {
	if err := a.setup(); err != nil {
		return err
	}
	if b.cfg.Ops > 0 && !fs.Changed("duration") {
		b.cfg.Duration = 0
	}
	b.cfg.Endpoints = a.endpoints
	if len(b.cfg.Endpoints) == 0 {
		b.cfg.Endpoints = []string{a.addr}
	}
	b.cfg.Client = a.clusterOptions(b.cfg.Client)
	return nil
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

func benchCmd(a *app) *cobra.Command {
	var bf benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Closed-loop load: throughput, errors, latency percentiles",
		Long: `bench runs --concurrency clients, each sending one request at a time, for
--duration (or --ops operations), and prints throughput, errors and latency
percentiles (HdrHistogram). bench compare runs the same load with sync and
async writes in alternating rounds; bench loss counts acknowledged writes
lost when group leaders are killed.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bf.finish(cmd.Flags(), a); err != nil {
				return err
			}
			return runBench(cmd.Context(), bf, cmd.OutOrStdout())
		},
	}
	bf.define(cmd.Flags())
	cmd.AddCommand(benchCompareCmd(a), benchLossCmd(), benchWatchCmd(a))
	return cmd
}

// runBench runs the workload bf describes and prints its results.
func runBench(ctx context.Context, bf benchFlags, out io.Writer) error {
	cfg, asJSON := &bf.cfg, bf.asJSON
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

// benchConfigView is the workload as printed with --json.
type benchConfigView struct {
	Endpoints   []string `json:"endpoints"`
	Routing     string   `json:"routing"`
	Balancer    string   `json:"balancer"`
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
	v := benchConfigView{Endpoints: c.Endpoints, Routing: c.Client.Routing, Balancer: c.Client.Balancer, Concurrency: c.Concurrency, Ops: c.Ops, ValueSize: c.ValueSize,
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
	fmt.Fprintf(out, "requests by node (routing %s, balancer %s):", cfg.Client.Routing, cfg.Client.Balancer)
	for _, n := range r.Nodes {
		name := n.ID
		if name == "" {
			name = n.Addr
		}
		fmt.Fprintf(out, "  %s %.1f%%", name, 100*n.Share)
		if n.Failures > 0 {
			fmt.Fprintf(out, " (%d failed)", n.Failures)
		}
	}
	fmt.Fprintln(out)
	if r.All.FirstError != "" {
		fmt.Fprintf(out, "first error: %s\n", r.All.FirstError)
	}
}

// writePlot writes a plot drawn by draw to the file at path.
func writePlot(path string, draw func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := draw(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func benchCompareCmd(a *app) *cobra.Command {
	var bf benchFlags
	var rounds int
	var plot, asyncEndpoints string
	var lo localFlags
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "The same load with sync and async writes, alternating rounds, side by side",
		Long: `bench compare runs the same load with sync and async writes in alternating
rounds and prints them side by side: against the cluster at --addr or
--endpoints, or, with --target local, against 3 nodes it starts itself.
With --link-latency the local nodes talk to each other through emulated
links (a one-way latency each way, optional --jitter and --bandwidth);
client traffic is not delayed. A list of latencies sweeps them on the same
nodes and --plot draws p50, p99 and writes/s against the link latency.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bf.cfg.Replication != "" {
				return errors.New("bench compare: runs both modes; leave out --replication")
			}
			if err := lo.check(asyncEndpoints); err != nil {
				return fmt.Errorf("bench compare: %w", err)
			}
			if !cmd.Flags().Changed("duration") && bf.cfg.Ops == 0 {
				bf.cfg.Duration = 5 * time.Second
			}
			if err := bf.finish(cmd.Flags(), a); err != nil {
				return err
			}
			return benchCompare(cmd.Context(), bf, rounds, plot, asyncEndpoints, lo, cmd.OutOrStdout())
		},
	}
	bf.define(cmd.Flags())
	cmd.Flags().Lookup("duration").Usage = "how long each round runs (default 5s here)"
	cmd.Flags().IntVar(&rounds, "rounds", 3, "rounds per mode, alternating sync and async")
	cmd.Flags().StringVar(&plot, "plot", "", "write an SVG plot to this file: the latency distributions, or with several --link-latency values the sweep")
	cmd.Flags().StringVar(&asyncEndpoints, "async-endpoints", "", "run the async rounds on this second cluster (comma-separated URLs)")
	lo.define(cmd.Flags())
	return cmd
}

// localFlags are bench compare's: where the nodes come from.
type localFlags struct {
	target, bin, dir string
	links            linkFlags
}

func (l *localFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&l.target, "target", "", "local: start 3 ringkvd processes on 127.0.0.1 for the run (default: the cluster at --addr or --endpoints)")
	fs.StringVar(&l.bin, "ringkvd", "", "local: path to the ringkvd binary (default: next to ringkv, then $PATH)")
	fs.StringVar(&l.dir, "dir", "", "local: directory for the nodes' data and logs, kept (default: a new temporary one, removed after the run)")
	l.links.define(fs)
	fs.DurationVar(&l.links.client, "client-latency", 0, "local: one-way latency between the benchmark's clients and the nodes (default: none, only the links between nodes have one)")
}

func (l *localFlags) check(asyncEndpoints string) error {
	switch l.target {
	case "":
	case "local":
		if asyncEndpoints != "" {
			return errors.New("--async-endpoints runs async on another cluster; --target local runs both on its own nodes")
		}
		if l.bin == "" {
			bin, err := findRingkvd()
			if err != nil {
				return err
			}
			l.bin = bin
		}
	default:
		return fmt.Errorf("--target %q: the only target here is local (or leave it out for --addr/--endpoints)", l.target)
	}
	if err := checkLinkTarget(l.target, l.links); err != nil {
		return err
	}
	_, err := l.links.shapes()
	return err
}

// benchCompare runs the workload with sync and async writes on the same
// cluster (or async on asyncEndpoints), alternating rounds, and prints
// them side by side.
func benchCompare(ctx context.Context, bf benchFlags, rounds int, plot, asyncEndpoints string, lo localFlags, out io.Writer) error {
	if lo.target == "local" {
		return benchCompareLocal(ctx, bf, rounds, plot, lo, out)
	}
	// With --async-endpoints the async rounds run on a second cluster (the
	// compose "async" profile); otherwise both run on the same one.
	asyncEps := splitList(asyncEndpoints)
	where := strings.Join(bf.cfg.Endpoints, ",")
	if len(asyncEps) > 0 {
		where = "sync on " + where + ", async on " + strings.Join(asyncEps, ",")
	}
	return compareOn(ctx, bf, rounds, plot, asyncEps, where, "", nil, out)
}

// compareModes are sync and async writes, async on asyncEps when given.
func compareModes(asyncEps []string) []bench.Mode {
	return []bench.Mode{
		{Name: "sync", Apply: func(c *bench.Config) { c.Replication = "sync" }},
		{Name: "async", Apply: func(c *bench.Config) {
			c.Replication = "async"
			if len(asyncEps) > 0 {
				c.Endpoints = asyncEps
			}
		}},
	}
}

func printRound(round int, mode string, r bench.Result) {
	fmt.Fprintf(os.Stderr, "round %d %-5s %8.0f writes/s  p99 %s  errors %d\n", round+1, mode, r.All.Throughput, ms(r.All.P99), r.All.Errors)
}

// compareOn runs the comparison on bf's endpoints (async on asyncEps when
// given) and prints it. link, when set, is the shape of the links between
// the nodes, for the JSON report; links describes them for the plot.
func compareOn(ctx context.Context, bf benchFlags, rounds int, plot string, asyncEps []string, where, links string, link *linkView, out io.Writer) error {
	res, err := bench.Compare(ctx, bf.cfg, compareModes(asyncEps), rounds, printRound)
	if err != nil {
		return err
	}
	if plot != "" {
		title := fmt.Sprintf("ringkv sync vs async: %d clients, %d-byte values, %d keys, %d rounds", bf.cfg.Concurrency, bf.cfg.ValueSize, bf.cfg.Keys, rounds)
		if links != "" {
			title += ", " + links
		}
		if err := writePlot(plot, func(w io.Writer) error { return bench.WriteSVG(w, title, res) }); err != nil {
			return err
		}
	}
	if bf.asJSON {
		return printJSON(out, struct {
			Config benchConfigView    `json:"config"`
			Rounds int                `json:"rounds"`
			Link   *linkView          `json:"link,omitempty"`
			Modes  []bench.ModeResult `json:"modes"`
		}{viewOf(bf.cfg), rounds, link, res})
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

func benchLossCmd() *cobra.Command {
	var tf targetFlags
	var o lossFlags
	cmd := &cobra.Command{
		Use:   "loss",
		Short: "Kill -9 a group leader under sync and async writes; count acknowledged writes lost",
		Long: `bench loss writes steadily to one group while killing its leader with
SIGKILL, for sync and then async writes, then reads back every acknowledged
write. Sync must lose none (exit status 1 otherwise); async reports what it
lost and the window it lost it in. It starts 3 local nodes itself, or works
on the compose containers, or on nodes killed and started by commands.`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.kills < 1 || o.rate < 1 || o.before <= 0 {
				return errors.New("bench loss: --kills, --rate and --before must be positive")
			}
			if err := checkLinkTarget(tf.target, o.links); err != nil {
				return fmt.Errorf("bench loss: %w", err)
			}
			if _, err := o.links.shapes(); err != nil {
				return fmt.Errorf("bench loss: %w", err)
			}
			return benchLoss(cmd.Context(), tf, o, cmd.OutOrStdout())
		},
	}
	tf.define(cmd.Flags())
	o.links.define(cmd.Flags())
	f := cmd.Flags()
	f.IntVar(&o.kills, "kills", 3, "leader kills per mode")
	f.IntVar(&o.rate, "rate", 200, "writes per second")
	f.DurationVar(&o.before, "before", time.Second, "writing time before each kill")
	f.DurationVar(&o.cut, "cut", 0, "cut the leader off from its followers this long before each kill (the async loss window grows with it)")
	f.StringVar(&o.dir, "dir", "", "directory for data and logs, kept (default: a new temporary one, removed after a passing run)")
	f.BoolVar(&o.asJSON, "json", false, "print the reports as JSON")
	return cmd
}

// lossFlags are bench loss's own flags.
type lossFlags struct {
	kills, rate int
	before, cut time.Duration
	dir         string
	asJSON      bool
	links       linkFlags
}

// benchLoss measures the writes lost to leader kills (chaos.MeasureLoss).
func benchLoss(ctx context.Context, tf targetFlags, o lossFlags, out io.Writer) error {
	kills, rate, before, cut, dir, asJSON := o.kills, o.rate, o.before, o.cut, o.dir, o.asJSON
	var err error
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
	var shapes []links.Shape
	pairs, geometry, err := o.links.pairs()
	if err != nil {
		return fmt.Errorf("bench loss: %w", err)
	}
	switch {
	case pairs != nil:
		tf.pairs, tf.geometry = pairs, geometry
	case o.links.on():
		if shapes, err = o.links.shapes(); err != nil {
			return err
		}
		tf.link = &shapes[0]
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
	for i := 0; i < max(len(shapes), 1); i++ {
		var latency time.Duration
		if len(shapes) > 0 {
			latency = shapes[i].Latency
			if i > 0 {
				if err := cluster.SetLinks(shapes[i]); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "links %s:\n", shapes[i])
		}
		for _, mode := range []string{"sync", "async"} {
			rep, err := chaos.MeasureLoss(ctx, chaos.LossConfig{Cluster: cluster, Group: 1, Kills: kills, Rate: rate,
				Replication: mode, Before: before, Cut: cut, Progress: os.Stderr})
			if err != nil {
				return fmt.Errorf("bench loss (%s): %w (logs in %s)", mode, err, dir)
			}
			rep.LinkLatency = latency
			reps = append(reps, rep)
		}
	}
	if asJSON {
		if err := printJSON(out, reps); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		if len(shapes) > 0 {
			fmt.Fprint(tw, "link\t")
		}
		fmt.Fprintln(tw, "mode\tkills\tacknowledged\tlost\tloss window\t")
		for _, r := range reps {
			if len(shapes) > 0 {
				fmt.Fprintf(tw, "%s\t", r.LinkLatency)
			}
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
	syncLost := 0
	for _, r := range reps {
		if r.Replication == "sync" {
			syncLost += len(r.Lost)
		}
	}
	if syncLost > 0 {
		return fmt.Errorf("bench loss: %d acknowledged sync writes lost (logs in %s)", syncLost, dir)
	}
	if !keep {
		os.RemoveAll(dir)
	}
	return nil
}
