package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/ringkv/ringkv/client"
)

// Fault kinds the nemesis knows.
const (
	FaultKill      = "kill"
	FaultPause     = "pause"
	FaultPartition = "partition"
)

// Config is one chaos run.
type Config struct {
	Cluster  *Cluster
	Groups   int
	Duration time.Duration
	// Nemesis lists the fault kinds to cycle through.
	Nemesis []string
	// FaultFor is how long each fault lasts; Recover is the quiet time after.
	FaultFor, Recover time.Duration
	Workers           int
	OutDir            string
	Progress          io.Writer
	// reshard, scale and steps carry the reshard and scale nemeses' state.
	reshard reshardPlan
	scale   scalePlan
	steps   []ReshardStep
	// Replication "async" makes the workload's plain puts asynchronous.
	// Async gives up both durability of acknowledged writes and reading
	// them at once, so lost writes and linearizability violations are
	// then reported as findings, not failures.
	Replication string
	// Watchers keeps that many watch streams open on the workload's keys
	// through the run, and checks what each delivered.
	Watchers int
}

// Report is the outcome of a run.
type Report struct {
	Ops, Unknown, Refused int64
	Faults                map[string]int
	LongestUnavailable    map[string]time.Duration
	Linearizable          bool
	CheckTimedOut         bool
	Visualization         string
	Acked                 int
	Lost                  []string
	LeaderAfterHeal       time.Duration
	ReplicasEqual         bool
	ReplicaProblem        string
	// Reshards are the ring and node changes made (the reshard and scale
	// nemeses); FinalGroups and FinalNodes the cluster's size after the
	// run scaled it back.
	Reshards                []ReshardStep
	FinalGroups, FinalNodes int
	// SnapshotInstalls counts snapshots installed on followers, as the
	// nodes' metrics report them (a node restarted later forgets its count).
	SnapshotInstalls int
	// Async is set for a run with asynchronous writes.
	Async bool
	// Watchers streams delivered WatchEvents changes; WatchProblems are
	// what the check of them found (none is the only good outcome).
	Watchers      int
	WatchEvents   int
	WatchProblems []string
}

// OK reports whether every check passed. With async writes only the
// replicas must agree; the rest is what async trades away.
func (r Report) OK() bool {
	if r.Async {
		return r.ReplicasEqual
	}
	return r.Linearizable && len(r.Lost) == 0 && r.ReplicasEqual && len(r.WatchProblems) == 0
}

// Print writes the report for a person.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "operations checked: %d (%d with unknown outcome, %d refused and left out)\n", r.Ops, r.Unknown, r.Refused)
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "faults %-9s %d, longest unavailability %v\n", k+":", r.Faults[k], r.LongestUnavailable[k].Round(time.Millisecond))
	}
	switch {
	case r.Linearizable:
		fmt.Fprintln(w, "linearizable: yes")
	case r.CheckTimedOut:
		fmt.Fprintln(w, "linearizable: undecided (checker timed out)")
	default:
		fmt.Fprintf(w, "linearizable: NO, see %s\n", r.Visualization)
	}
	if r.Async {
		fmt.Fprintln(w, "async writes: a lost acknowledged write or a read that misses one is what async gives up; reported, not failed")
	}
	printReshards(w, r.Reshards)
	if len(r.Reshards) > 0 {
		fmt.Fprintf(w, "cluster after scaling back: %d nodes, %d groups\n", r.FinalNodes, r.FinalGroups)
	}
	fmt.Fprintf(w, "acknowledged writes: %d, lost: %d\n", r.Acked, len(r.Lost))
	for i, k := range r.Lost {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more\n", len(r.Lost)-10)
			break
		}
		fmt.Fprintf(w, "  lost %s\n", k)
	}
	if r.Watchers > 0 {
		fmt.Fprintf(w, "watchers: %d streams delivered %d changes; problems: %d\n", r.Watchers, r.WatchEvents, len(r.WatchProblems))
		for _, p := range r.WatchProblems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintf(w, "every group had a leader %v after healing\n", r.LeaderAfterHeal.Round(time.Millisecond))
	fmt.Fprintf(w, "snapshots installed on followers: at least %d\n", r.SnapshotInstalls)
	if r.ReplicasEqual {
		fmt.Fprintln(w, "replicas: every replica of every group holds the same data")
	} else {
		fmt.Fprintf(w, "replicas: DIFFER: %s\n", r.ReplicaProblem)
	}
}

type window struct {
	kind       string
	start, end int64
}

// Run drives the workload while the nemesis injects faults, then heals and
// checks.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Replication == "" {
		// Plain puts take the cluster's default: a cluster whose nodes
		// acknowledge asynchronously is held to what async promises.
		for _, p := range cfg.Cluster.Procs {
			if st, err := p.Client.Status(ctx); err == nil && st.Replication == "async" {
				cfg.Replication = "async"
			}
		}
	}
	rep := Report{Faults: map[string]int{}, LongestUnavailable: map[string]time.Duration{}, Async: cfg.Replication == "async"}
	var clients []*client.Client
	for _, p := range cfg.Cluster.Procs {
		clients = append(clients, p.Client)
	}
	h := NewHistory()
	w := Workload{Clients: clients, Workers: cfg.Workers, Keys: 8, OpsPerKey: 200, OpTimeout: 3 * time.Second, Replication: cfg.Replication,
		Prefix: fmt.Sprintf("chaos/%d/", time.Now().UnixNano())}
	var watchers []*watcher
	if cfg.Watchers > 0 {
		// They outlive the workload: they are checked after the healing.
		watchCtx, stopWatching := context.WithCancel(ctx)
		defer stopWatching()
		var err error
		watchers, err = cfg.Cluster.startWatchers(watchCtx, cfg.Watchers, w.Prefix)
		defer closeWatchers(watchers)
		if err != nil {
			return rep, fmt.Errorf("opening the watchers: %w", err)
		}
		rep.Watchers = cfg.Watchers
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	statsCh := make(chan Stats, 1)
	go func() { statsCh <- w.Run(wctx, h) }()

	var windows []window
	for cycle := 0; wctx.Err() == nil; cycle++ {
		kind := cfg.Nemesis[cycle%len(cfg.Nemesis)]
		start := h.Now()
		err := cfg.inject(wctx, cycle, kind)
		if err != nil && wctx.Err() == nil {
			return rep, err
		}
		rep.Faults[kind]++
		sleep(wctx, cfg.Recover)
		windows = append(windows, window{kind: kind, start: start, end: h.Now()})
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "\r%-60s", fmt.Sprintf("%v: %d faults injected", time.Duration(h.Now()).Round(time.Second), cycle+1))
		}
	}
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	st := <-statsCh
	if err := cfg.scaleBack(ctx, &rep); err != nil {
		return rep, err
	}
	rep.Ops, rep.Unknown, rep.Refused, rep.Acked = st.Ops, st.Unknown, st.Refused, len(st.Acked)
	ops := h.Operations()
	rep.LongestUnavailable = unavailability(ops, windows)

	// Heal everything and time how long until every group has a leader.
	healStart := time.Now()
	if err := cfg.healAll(ctx); err != nil {
		return rep, err
	}
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err := cfg.Cluster.WaitReady(rctx, len(cfg.Cluster.Procs)); err != nil {
		return rep, fmt.Errorf("cluster did not recover after healing: %w", err)
	}
	rep.LeaderAfterHeal = time.Since(healStart)

	budget := 2 * time.Minute
	if rep.Async {
		budget = 20 * time.Second // informative only: async does not promise it
	}
	v, err := Check(ops, budget, filepath.Join(cfg.OutDir, "violation.html"))
	if err != nil {
		return rep, err
	}
	rep.Linearizable, rep.CheckTimedOut, rep.Visualization = v.Linearizable, v.Unknown, v.Visualization

	// The check above may take minutes: the read-back gets its own time.
	rctx, rcancel = context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	for _, k := range st.Acked {
		got, err := clients[0].Get(rctx, k, "linearizable")
		if err != nil || string(got.Data) != k {
			rep.Lost = append(rep.Lost, k)
		}
	}
	if len(watchers) > 0 {
		e := expectations(ops, st.Acked, w.Prefix+"watchers-ready")
		rep.WatchProblems, rep.WatchEvents = checkWatchers(ctx, watchers, e, w.Prefix+"set/", rep.Async)
	}
	rep.ReplicasEqual, rep.ReplicaProblem = CompareReplicas(rctx, cfg.Cluster)
	rep.SnapshotInstalls = snapshotInstalls(rctx, cfg.Cluster)
	return rep, nil
}

// scaleBack shrinks a run that grew the cluster back to where it started
// (nodes and groups), recording every ring step in rep and the final
// shape.
func (cfg *Config) scaleBack(ctx context.Context, rep *Report) error {
	sctx, scancel := context.WithTimeout(ctx, 5*time.Minute)
	back, err := cfg.Cluster.scaleBack(sctx, &cfg.scale)
	if err == nil {
		var more []ReshardStep
		more, err = cfg.Cluster.reshardBack(sctx, &cfg.reshard)
		back = append(back, more...)
	}
	scancel()
	cfg.steps = append(cfg.steps, back...)
	rep.Reshards = cfg.steps
	if err != nil {
		return fmt.Errorf("scaling back: %w", err)
	}
	if len(rep.Reshards) > 0 {
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		view, err := cfg.Cluster.ringStill(fctx)
		cv, err2 := cfg.Cluster.clusterView(fctx)
		fcancel()
		if err == nil && err2 == nil {
			rep.FinalGroups, rep.FinalNodes = len(view.Groups), len(cv.Nodes)
		}
	}
	return nil
}

// snapshotInstalls sums raft's installSnapshot counters over the nodes.
func snapshotInstalls(ctx context.Context, c *Cluster) int {
	total := 0
	for _, p := range c.Procs {
		resp, err := p.Client.Stream(ctx, http.MethodGet, "/metrics", nil, nil)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "ringkv_raft_rpc_installSnapshot_count" {
				n, _ := strconv.ParseFloat(f[1], 64)
				total += int(n)
			}
		}
		resp.Body.Close()
	}
	return total
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// inject applies one fault for FaultFor and undoes it.
func (cfg *Config) inject(ctx context.Context, cycle int, kind string) error {
	c := cfg.Cluster
	g := uint32(1 + cycle%max(cfg.Groups, 1))
	target := c.LeaderOf(ctx, g)
	if target < 0 || (kind == FaultPartition && cycle%2 == 1) {
		target = cycle % len(c.Procs) // a node, not necessarily a leader
	}
	p := c.Procs[target]
	switch kind {
	case FaultKill:
		if err := p.Kill(); err != nil {
			return err
		}
		sleep(ctx, cfg.FaultFor)
		return p.Start()
	case FaultPause:
		if err := p.Pause(); err != nil {
			return err
		}
		sleep(ctx, cfg.FaultFor)
		return p.Resume()
	case FaultReshard:
		step, err := c.reshard(ctx, &cfg.reshard)
		if err == nil {
			cfg.steps = append(cfg.steps, step)
		}
		return err
	case FaultScale:
		step, err := c.scale(ctx, &cfg.scale)
		if err == nil {
			cfg.steps = append(cfg.steps, step)
		}
		return err
	case FaultPartition:
		hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Partition(hctx, target); err != nil {
			return err
		}
		sleep(ctx, cfg.FaultFor)
		return c.Heal(hctx)
	}
	return fmt.Errorf("unknown fault kind %q", kind)
}

func (cfg Config) healAll(ctx context.Context) error {
	for _, p := range cfg.Cluster.Procs {
		if p.Running() {
			p.Resume()
		} else if err := p.Start(); err != nil {
			return err
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(hctx, 100*time.Millisecond, func() error { return cfg.Cluster.Heal(hctx) })
}

// unavailability returns, per fault kind, the longest stretch inside one of
// its windows with no successfully completed operation.
func unavailability(ops []porcupine.Operation, windows []window) map[string]time.Duration {
	var done []int64
	for _, op := range ops {
		if o := op.Output.(Output); !o.Unknown {
			done = append(done, op.Return)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	out := map[string]time.Duration{}
	for _, w := range windows {
		last := w.start
		var longest int64
		for _, t := range done {
			if t < w.start {
				continue
			}
			if t > w.end {
				break
			}
			longest = max(longest, t-last)
			last = t
		}
		longest = max(longest, w.end-last)
		if d := time.Duration(longest); d > out[w.kind] {
			out[w.kind] = d
		}
	}
	return out
}

// CompareReplicas verifies every group (POST /v1/verify?repair=false): a
// verification entry goes through each group's log and every replica's
// Merkle root at that index, recomputed from its data, is compared. A replica that has not caught up
// yet is waited for until ctx ends; roots that differ fail at once, with
// the key ranges and keys the verification located. Nothing is repaired:
// the run reports what it found.
func CompareReplicas(ctx context.Context, c *Cluster) (bool, string) {
	var res client.Verification
	var diverged string
	err := poll(ctx, 200*time.Millisecond, func() error {
		var err error
		if res, err = c.Procs[0].Client.Verify(ctx, client.VerifyOptions{NoRepair: true}); err != nil {
			return err
		}
		for _, g := range res.Groups {
			for _, r := range g.Replicas {
				if (r.Root != "" && r.Root != g.Root) || (r.DataRoot != "" && r.DataRoot != g.Root) {
					diverged = fmt.Sprintf("group %d at index %d: %s holds root %.16s (its data %.16s), the group %.16s", g.Group, g.Index, r.Node, r.Root, r.DataRoot, g.Root)
					if r.Diff != nil {
						diverged += fmt.Sprintf(" (%d key ranges differ; keys %q)", len(r.Diff.Ranges), r.Diff.Keys)
					}
					return nil
				}
				if r.Error != "" {
					return fmt.Errorf("group %d, %s: %s", g.Group, r.Node, r.Error)
				}
			}
		}
		return nil
	})
	switch {
	case diverged != "":
		return false, diverged
	case err != nil:
		return false, "verification did not complete: " + err.Error()
	case !res.Agree:
		return false, "verification reported disagreement"
	}
	return true, ""
}
