package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/ringkv/ringkv/bench"
	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/links"
)

// linkFlags emulate links with latency between local nodes (package
// links): bench compare's and bench loss's --link-latency, --jitter and
// --bandwidth.
type linkFlags struct {
	latencies string
	jitter    time.Duration
	bandwidth string
	// client is --client-latency: a link in front of each node's client
	// port too (bench compare only).
	client time.Duration
	// regions is --regions: node i in region i, each pair of nodes
	// linked by the published latency between their regions.
	regions string
}

// pairs returns, for --regions, the links between each pair of the 3
// nodes and a description; nil without --regions.
func (l *linkFlags) pairs() (func(from, to int) links.Shape, string, error) {
	if l.regions == "" {
		return nil, "", nil
	}
	if l.latencies != "" {
		return nil, "", errors.New("--regions and --link-latency both set the links between nodes: give one")
	}
	names := splitList(l.regions)
	if len(names) != 3 {
		return nil, "", fmt.Errorf("--regions %q: name a region for each of the 3 nodes", l.regions)
	}
	g, err := links.Geometry(names)
	if err != nil {
		return nil, "", err
	}
	bw, err := links.ParseBandwidth(l.bandwidth)
	if err != nil {
		return nil, "", err
	}
	f := func(from, to int) links.Shape {
		d := g[from][to]
		return links.Shape{Latency: d, Jitter: min(l.jitter, d), Bandwidth: bw}
	}
	desc := fmt.Sprintf("nodes in %s (one way: %v, %v, %v)", strings.Join(names, ", "), g[0][1], g[0][2], g[1][2])
	return f, desc, nil
}

func (l *linkFlags) define(fs *pflag.FlagSet) {
	fs.StringVar(&l.latencies, "link-latency", "", "local: one-way latency of the links between nodes, in whole ms (10ms); a list (0,1ms,5ms,20ms,50ms) sweeps it")
	fs.DurationVar(&l.jitter, "jitter", 0, "local: with --link-latency, each delay varies by up to this much either way")
	fs.StringVar(&l.bandwidth, "bandwidth", "", "local: with --link-latency, a cap on each direction of each link (100mbit, 1gbit, 10MB)")
	fs.StringVar(&l.regions, "regions", "", "local: put node 1, 2 and 3 in these AWS regions (us-east,eu-west,ap-south; a region twice puts two nodes in it), linked by half the published round trip between each two: "+strings.Join(links.Regions(), ", "))
}

// on reports whether any link flag was given.
func (l *linkFlags) on() bool {
	return l.latencies != "" || l.jitter != 0 || l.bandwidth != "" || l.client != 0 || l.regions != ""
}

// clientShape is the shape of the links in front of the client ports, or
// nil for none.
func (l *linkFlags) clientShape() (*links.Shape, error) {
	if l.client == 0 {
		return nil, nil
	}
	s := links.Shape{Latency: l.client}
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("--client-latency: %w", err)
	}
	return &s, nil
}

// shapes are the link shapes to run, one per latency of the sweep.
func (l *linkFlags) shapes() ([]links.Shape, error) {
	bw, err := links.ParseBandwidth(l.bandwidth)
	if err != nil {
		return nil, err
	}
	items := splitList(l.latencies)
	if len(items) == 0 {
		items = []string{"0"}
	}
	var out []links.Shape
	for _, it := range items {
		d, err := parseLatency(it)
		if err != nil {
			return nil, err
		}
		s := links.Shape{Latency: d, Jitter: min(l.jitter, d), Bandwidth: bw}
		if err := s.Check(); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// parseLatency reads "10ms" or a bare "0".
func parseLatency(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("--link-latency %q: %w", s, err)
	}
	return d, nil
}

// localBench is a local cluster started for a benchmark, its nodes' Raft
// ports behind emulated links.
type localBench struct {
	cluster *chaos.Cluster
	dir     string
	keep    bool
}

// startLocalBench starts 3 local nodes (3 groups) with links of shape s in
// dir (a new temporary directory when empty), and waits until each node
// leads a group.
func startLocalBench(ctx context.Context, bin, dir string, s *links.Shape, client *links.Shape, pairs func(from, to int) links.Shape) (*localBench, error) {
	lb := &localBench{dir: dir, keep: dir != ""}
	if dir == "" {
		var err error
		if lb.dir, err = os.MkdirTemp("", "ringkv-bench-"); err != nil {
			return nil, err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := []string{"--groups", "3", "--log-level", "warn", "--balance-interval", "500ms"}
	c, err := chaos.StartLocal(sctx, chaos.LocalOptions{Bin: bin, Dir: lb.dir, Nodes: 3, Args: args, Link: s, ClientLink: client, PairLink: pairs})
	if err != nil {
		return nil, fmt.Errorf("starting 3 local nodes: %w (logs in %s)", err, lb.dir)
	}
	lb.cluster = c
	if err := c.WaitLeadersSpread(sctx); err != nil {
		lb.close()
		return nil, fmt.Errorf("%w (logs in %s)", err, lb.dir)
	}
	return lb, nil
}

// urls are the nodes' client URLs, through their client links if any.
func (lb *localBench) urls() []string {
	var out []string
	for _, p := range lb.cluster.Procs {
		out = append(out, p.ClientURL())
	}
	return out
}

// reshape gives every link shape s and waits until the cluster serves
// again with leaders spread (a much longer link may cost an election).
func (lb *localBench) reshape(ctx context.Context, s links.Shape) error {
	if err := lb.cluster.SetLinks(s); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := lb.cluster.WaitReady(sctx, 3); err != nil {
		return err
	}
	return lb.cluster.WaitLeadersSpread(sctx)
}

// close stops the nodes and the links, and removes a temporary directory.
func (lb *localBench) close() {
	if lb.cluster != nil {
		lb.cluster.Stop()
	}
	if !lb.keep {
		os.RemoveAll(lb.dir)
	}
}

// checkLinkTarget refuses link flags without --target local.
func checkLinkTarget(target string, lf linkFlags) error {
	if lf.on() && target != "local" {
		return errors.New("--link-latency, --jitter and --bandwidth need --target local (the compose cluster's links are set in its wan profile)")
	}
	return nil
}

// linkView is the links' shape in JSON.
type linkView struct {
	Latency   time.Duration `json:"latency_ns"`
	Jitter    time.Duration `json:"jitter_ns,omitempty"`
	Bandwidth int64         `json:"bandwidth_bytes_per_s,omitempty"`
}

func viewOfLink(s *links.Shape) *linkView {
	if s == nil {
		return nil
	}
	return &linkView{Latency: s.Latency, Jitter: s.Jitter, Bandwidth: s.Bandwidth}
}

// benchCompareLocal starts 3 local nodes behind emulated links and runs
// the comparison at each link latency of the sweep on them.
func benchCompareLocal(ctx context.Context, bf benchFlags, rounds int, plot string, lo localFlags, out io.Writer) error {
	shapes, err := lo.links.shapes()
	if err != nil {
		return err
	}
	client, err := lo.links.clientShape()
	if err != nil {
		return err
	}
	pairs, geometry, err := lo.links.pairs()
	if err != nil {
		return err
	}
	link := &shapes[0]
	if pairs != nil {
		link = nil
	}
	lb, err := startLocalBench(ctx, lo.bin, lo.dir, link, client, pairs)
	if err != nil {
		return fmt.Errorf("bench compare: %w", err)
	}
	defer lb.close()
	bf.cfg.Endpoints = lb.urls()
	fmt.Fprintf(os.Stderr, "bench compare: 3 local nodes, 3 groups, files in %s\n", lb.dir)
	if pairs != nil || len(shapes) == 1 {
		// desc names the links, for the plot; where the nodes, for the table.
		desc, where, view := geometry, "3 local "+geometry, (*linkView)(nil)
		if pairs == nil {
			desc, view = "links "+shapes[0].String(), viewOfLink(&shapes[0])
			where = "3 local nodes, " + desc
		}
		if client != nil {
			desc += ", clients " + client.String() + " away"
			where += ", clients " + client.String() + " away"
		}
		return compareOn(ctx, bf, rounds, plot, nil, where, desc, view, out)
	}
	var points []bench.SweepPoint
	for i, s := range shapes {
		if i > 0 {
			if err := lb.reshape(ctx, s); err != nil {
				return fmt.Errorf("bench compare: links to %v: %w (logs in %s)", s, err, lb.dir)
			}
		}
		fmt.Fprintf(os.Stderr, "links %s:\n", s)
		res, err := bench.Compare(ctx, bf.cfg, compareModes(nil), rounds, printRound)
		if err != nil {
			return err
		}
		points = append(points, bench.SweepPoint{LinkLatency: s.Latency, Modes: res})
	}
	if plot != "" {
		title := fmt.Sprintf("ringkv sync vs async against link latency: %d clients, %d-byte values, %d rounds", bf.cfg.Concurrency, bf.cfg.ValueSize, rounds)
		if err := writePlot(plot, func(w io.Writer) error { return bench.WriteSweepSVG(w, title, points) }); err != nil {
			return err
		}
	}
	if bf.asJSON {
		return printJSON(out, struct {
			Config benchConfigView    `json:"config"`
			Rounds int                `json:"rounds"`
			Link   *linkView          `json:"link"`
			Sweep  []bench.SweepPoint `json:"sweep"`
		}{viewOf(bf.cfg), rounds, viewOfLink(&links.Shape{Jitter: shapes[0].Jitter, Bandwidth: shapes[0].Bandwidth}), points})
	}
	fmt.Fprintf(out, "%d clients, %d-byte values, %d keys (%s), %.0f%% reads, %d alternating rounds per mode, 3 local nodes, links swept over %s\n",
		bf.cfg.Concurrency, bf.cfg.ValueSize, bf.cfg.Keys, bf.cfg.Dist, 100*bf.cfg.Reads, rounds, lo.links.latencies)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "link\tmode\tops/s\tp50\tp90\tp99\tmax\terrors\tasync/sync p50\t")
	for _, p := range points {
		var syncP50 time.Duration
		for _, m := range p.Modes {
			st := m.Stats
			ratio := ""
			if m.Name == "sync" {
				syncP50 = st.P50
			} else if syncP50 > 0 {
				ratio = fmt.Sprintf("%.2fx", float64(st.P50)/float64(syncP50))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t\n", p.LinkLatency, m.Name, st.Throughput, ms(st.P50), ms(st.P90), ms(st.P99), ms(st.Max), st.Errors, ratio)
		}
	}
	tw.Flush()
	if plot != "" {
		fmt.Fprintf(out, "plot written to %s\n", plot)
	}
	return nil
}
