package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/client"
)

// Config describes a workload.
type Config struct {
	// Endpoints are the nodes the run's client (client.Cluster) starts
	// from: it learns the others, sends each request as Client.Routing
	// says and balances as Client.Balancer says, and skips a node that
	// does not answer.
	Endpoints []string
	// Concurrency is the number of closed-loop clients.
	Concurrency int
	// Duration bounds the run; when zero, Ops does.
	Duration time.Duration
	// Ops is the number of operations to run in all (0: until Duration).
	Ops int64
	// ValueSize is the size of written values in bytes.
	ValueSize int
	// Keys is the size of the key space; keys are KeyPrefix + a number.
	Keys      int
	KeyPrefix string
	// Reads is the fraction of operations that are reads.
	Reads float64
	// Dist picks keys: "uniform", "zipfian" (a few keys get most
	// operations) or "sequential" (every client takes the next key, so
	// Keys operations write each key once: loading a data set).
	// operations).
	Dist string
	// Replication and Consistency are passed on each write and read ("":
	// the cluster's default).
	Replication string
	Consistency string
	// Client shapes the run's client: routing, balancer, TLS, a token.
	Client client.ClusterOptions
	// Seed makes the key sequence repeatable.
	Seed int64
	// Progress, if set, is called about once a second with the totals
	// so far.
	Progress func(Progress)
}

// DefaultConfig is a small write-only workload.
func DefaultConfig() Config {
	return Config{Concurrency: 16, Duration: 10 * time.Second, ValueSize: 128, Keys: 10000, KeyPrefix: "bench/", Dist: "uniform", Seed: 1}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("bench: no endpoints")
	case c.Concurrency < 1:
		return errors.New("bench: concurrency must be at least 1")
	case c.Duration <= 0 && c.Ops <= 0:
		return errors.New("bench: give a duration or a number of operations")
	case c.Duration < 0 || c.Ops < 0:
		return errors.New("bench: negative duration or operations")
	case c.ValueSize < 0 || c.Keys < 1:
		return errors.New("bench: value size must be >= 0 and keys >= 1")
	case c.Reads < 0 || c.Reads > 1:
		return errors.New("bench: reads is a fraction between 0 and 1")
	case c.Dist != "uniform" && c.Dist != "zipfian" && c.Dist != "sequential":
		return fmt.Errorf("bench: unknown distribution %q (want uniform, zipfian or sequential)", c.Dist)
	case c.Replication != "" && c.Replication != "sync" && c.Replication != "async":
		return fmt.Errorf("bench: unknown replication %q (want sync or async)", c.Replication)
	}
	return nil
}

// Progress is a running total.
type Progress struct {
	Elapsed time.Duration
	Ops     int64
	Errors  int64
}

// OpStats summarises one kind of operation.
type OpStats struct {
	Ops        uint64        `json:"ops"`
	Errors     uint64        `json:"errors"`
	Throughput float64       `json:"ops_per_s"`
	Mean       time.Duration `json:"mean_ns"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Max        time.Duration `json:"max_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// Result is a run's outcome; latencies count successful operations only.
type Result struct {
	Elapsed time.Duration `json:"elapsed_ns"`
	Writes  OpStats       `json:"writes"`
	Reads   OpStats       `json:"reads"`
	All     OpStats       `json:"all"`
	// MaxStall is the longest time one client went without a successful
	// operation (a leader election, a node restarting under it).
	MaxStall time.Duration `json:"max_stall_ns"`
	// Latencies holds every successful operation's latency, for merging
	// runs.
	Latencies *Histogram `json:"-"`
	// Nodes are the requests the client sent to each node, with their
	// share of all (retries and the client's own requests included).
	Nodes []NodeShare `json:"nodes"`
}

// NodeShare is one node's part of a run's requests.
type NodeShare struct {
	ID       string  `json:"id"`
	Addr     string  `json:"addr"`
	Requests uint64  `json:"requests"`
	Share    float64 `json:"share"`
	Failures uint64  `json:"failures"`
}

// shares turns a client's per-node counts into shares.
func shares(stats []client.NodeStats) []NodeShare {
	var total uint64
	for _, s := range stats {
		total += s.Requests
	}
	out := make([]NodeShare, 0, len(stats))
	for _, s := range stats {
		out = append(out, NodeShare{ID: s.ID, Addr: s.Addr, Requests: s.Requests, Failures: s.Failures,
			Share: float64(s.Requests) / float64(max(total, 1))})
	}
	return out
}

type worker struct {
	lastOK, end    time.Time
	maxStall       time.Duration
	writes, reads  Histogram
	wErrs, rErrs   uint64
	wFirst, rFirst string
}

// Run drives the workload until the duration passes, the operations are
// done or ctx ends, and returns what it measured.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	cl, err := client.NewCluster(cctx, cfg.Endpoints, cfg.Client)
	cancel()
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	rn := &runner{cfg: cfg, cl: cl, value: make([]byte, cfg.ValueSize)}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	for i := range rn.value {
		rn.value[i] = 'a' + byte(i%26)
	}
	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	rn.start = time.Now()
	for w := range workers {
		workers[w] = &worker{lastOK: rn.start}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.work(ctx, w, workers[w])
		}()
	}
	stop := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					cfg.Progress(Progress{Elapsed: time.Since(rn.start), Ops: rn.done.Load(), Errors: rn.errs.Load()})
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	res := summarize(workers, time.Since(rn.start))
	res.Nodes = shares(cl.Stats())
	return res, nil
}

// runner is one run's shared state.
type runner struct {
	cfg                Config
	cl                 *client.Cluster
	value              []byte
	start              time.Time
	issued, done, errs atomic.Int64
	seq                atomic.Uint64
}

// work is one client's loop: it issues operations until the run ends,
// recording each in me.
func (rn *runner) work(ctx context.Context, w int, me *worker) {
	cfg := rn.cfg
	defer func() { me.end = time.Now() }()
	rng := rand.New(rand.NewSource(cfg.Seed + int64(w)))
	pick := keyPicker(cfg, rng, &rn.seq)
	for ctx.Err() == nil {
		if cfg.Ops > 0 && rn.issued.Add(1) > cfg.Ops {
			return
		}
		key := fmt.Sprintf("%s%08d", cfg.KeyPrefix, pick())
		read := rng.Float64() < cfg.Reads
		t0 := time.Now()
		c := rn.cl
		var err error
		if read {
			_, err = c.Get(ctx, key, cfg.Consistency)
			if client.IsCode(err, "not_found") {
				err = nil // a key not written yet is an answer
			}
		} else {
			_, err = c.Put(ctx, key, rn.value, client.PutOptions{Replication: cfg.Replication})
		}
		lat := time.Since(t0)
		if ctx.Err() != nil && err != nil {
			return // cut off by the end of the run, not a failure
		}
		rn.done.Add(1)
		if err != nil {
			rn.errs.Add(1)
		}
		me.record(read, lat, err, t0)
	}
}

// record counts one operation's outcome.
func (me *worker) record(read bool, lat time.Duration, err error, t0 time.Time) {
	switch {
	case err != nil && read:
		me.rErrs++
		if me.rFirst == "" {
			me.rFirst = err.Error()
		}
	case err != nil:
		me.wErrs++
		if me.wFirst == "" {
			me.wFirst = err.Error()
		}
	case read:
		me.reads.Record(lat)
	default:
		me.writes.Record(lat)
	}
	if now := t0.Add(lat); err == nil {
		me.maxStall = max(me.maxStall, now.Sub(me.lastOK))
		me.lastOK = now
	}
}

// summarize merges the workers' records of a run that took elapsed.
func summarize(workers []*worker, elapsed time.Duration) Result {
	var wh, rh, all Histogram
	var res Result
	res.Elapsed = elapsed
	for _, w := range workers {
		// A client still failing when the run ended stalled until then.
		res.MaxStall = max(res.MaxStall, w.maxStall, w.end.Sub(w.lastOK))
		wh.Merge(&w.writes)
		rh.Merge(&w.reads)
		res.Writes.Errors += w.wErrs
		res.Reads.Errors += w.rErrs
		if res.Writes.FirstError == "" {
			res.Writes.FirstError = w.wFirst
		}
		if res.Reads.FirstError == "" {
			res.Reads.FirstError = w.rFirst
		}
	}
	all.Merge(&wh)
	all.Merge(&rh)
	fill(&res.Writes, &wh, elapsed)
	fill(&res.Reads, &rh, elapsed)
	res.All.Errors = res.Writes.Errors + res.Reads.Errors
	res.All.FirstError = res.Writes.FirstError
	if res.All.FirstError == "" {
		res.All.FirstError = res.Reads.FirstError
	}
	fill(&res.All, &all, elapsed)
	res.Latencies = &all
	return res
}

// Stats summarises h as if its operations ran in elapsed.
func Stats(h *Histogram, elapsed time.Duration) OpStats {
	var s OpStats
	fill(&s, h, elapsed)
	return s
}

func fill(s *OpStats, h *Histogram, elapsed time.Duration) {
	s.Ops = h.Count()
	s.Throughput = float64(h.Count()) / elapsed.Seconds()
	s.Mean, s.Max = h.Mean(), h.Max()
	s.P50, s.P90, s.P99, s.P999 = h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99), h.Quantile(0.999)
}

// keyPicker returns a source of key numbers in [0, Keys); seq is the
// counter the clients share for the sequential distribution.
func keyPicker(cfg Config, rng *rand.Rand, seq *atomic.Uint64) func() uint64 {
	if cfg.Dist == "sequential" {
		return func() uint64 { return (seq.Add(1) - 1) % uint64(cfg.Keys) }
	}
	if cfg.Dist == "zipfian" && cfg.Keys > 1 {
		z := rand.NewZipf(rng, 1.1, 1, uint64(cfg.Keys-1))
		return z.Uint64
	}
	return func() uint64 { return uint64(rng.Intn(cfg.Keys)) }
}
