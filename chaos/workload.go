package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/client"
)

// Workload drives concurrent clients against a cluster and records every
// operation in a History.
type Workload struct {
	// Clients, one per endpoint in turn.
	Clients []*client.Client
	// Workers is the number of concurrent workers.
	Workers int
	// Keys is the size of the active key set.
	Keys int
	// OpsPerKey retires a key after this many operations, so that each
	// key's history stays small enough to check quickly.
	OpsPerKey int
	// OpTimeout bounds each operation.
	OpTimeout time.Duration
	// Prefix starts every key the workload touches: a cluster that keeps
	// its data between runs must not show one run the keys of another,
	// which the checker would take for values from nowhere.
	Prefix string
	// Replication is passed on plain puts ("": the cluster's default);
	// compare-and-swaps are always synchronous.
	Replication string
}

// Stats counts what a run did.
type Stats struct {
	Ops, Unknown, Refused int64
	// Acked holds the keys of the set workload whose single write was
	// acknowledged; every one must be readable after the run.
	Acked []string
}

type keySet struct {
	prefix string
	mu     sync.Mutex
	keys   []string
	ops    []int
	gen    int
}

func (ks *keySet) pick(rng *rand.Rand, perKey int) string {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	i := rng.IntN(len(ks.keys))
	ks.ops[i]++
	if ks.ops[i] > perKey {
		ks.gen++
		ks.keys[i], ks.ops[i] = fmt.Sprintf("%slin/%d", ks.prefix, ks.gen), 1
	}
	return ks.keys[i]
}

// retire replaces key by a fresh one. A write with an unknown outcome may
// take effect at any time after it was sent, so the checker must consider
// it concurrent with every later operation on its key: retiring the key
// keeps such operations from piling up in one key's history, where each
// would multiply the orders the checker has to try.
func (ks *keySet) retire(key string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for i, k := range ks.keys {
		if k == key {
			ks.gen++
			ks.keys[i], ks.ops[i] = fmt.Sprintf("%slin/%d", ks.prefix, ks.gen), 0
		}
	}
}

// Run runs until ctx ends.
func (w Workload) Run(ctx context.Context, h *History) Stats {
	ks := &keySet{prefix: w.Prefix, keys: make([]string, w.Keys), ops: make([]int, w.Keys), gen: w.Keys}
	for i := range ks.keys {
		ks.keys[i] = fmt.Sprintf("%slin/%d", w.Prefix, i)
	}
	var st Stats
	var ops, unknown, refused atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var setSeq atomic.Int64
	for id := 0; id < w.Workers; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
			lastIndex := map[string]uint64{}
			seq := 0
			for ctx.Err() == nil {
				c := w.Clients[rng.IntN(len(w.Clients))]
				if rng.IntN(10) == 0 {
					// Set workload: a unique key written once.
					k := fmt.Sprintf("%sset/%d", w.Prefix, setSeq.Add(1))
					octx, cancel := context.WithTimeout(ctx, w.OpTimeout)
					_, err := c.Put(octx, k, []byte(k), client.PutOptions{Replication: w.Replication})
					cancel()
					if err == nil {
						mu.Lock()
						st.Acked = append(st.Acked, k)
						mu.Unlock()
					}
					continue
				}
				key := ks.pick(rng, w.OpsPerKey)
				seq++
				in := Input{Key: key, Value: fmt.Sprintf("w%d-%d", id, seq)}
				switch r := rng.IntN(10); {
				case r < 4:
					in.Op = OpGet
				case r < 7:
					in.Op = OpPut
				case r < 9:
					in.Op, in.CAS = OpCAS, lastIndex[key]
				default:
					in.Op = OpDelete
				}
				call := h.Now()
				out, record := w.do(ctx, c, in)
				ret := h.Now()
				if !record {
					refused.Add(1)
					continue
				}
				if out.Unknown {
					unknown.Add(1)
					ks.retire(key)
				}
				if out.OK && out.Index > 0 {
					lastIndex[key] = out.Index
				}
				if !out.OK && in.Op == OpCAS && !out.Unknown {
					lastIndex[key] = out.Current
				}
				ops.Add(1)
				h.Add(id, in, call, out, ret)
			}
		}()
	}
	wg.Wait()
	st.Ops, st.Unknown, st.Refused = ops.Load(), unknown.Load(), refused.Load()
	return st
}

// do runs one operation. record is false when the server refused it (it
// had no effect) or a read failed (it observed nothing).
func (w Workload) do(ctx context.Context, c *client.Client, in Input) (out Output, record bool) {
	octx, cancel := context.WithTimeout(ctx, w.OpTimeout)
	defer cancel()
	var err error
	switch in.Op {
	case OpGet:
		var v client.Value
		v, err = c.Get(octx, in.Key, "linearizable")
		if err == nil {
			return Output{OK: true, Value: string(v.Data), Index: v.Index}, true
		}
		if client.IsCode(err, "not_found") {
			return Output{}, true
		}
		return Output{}, false // a failed read observed nothing
	case OpPut, OpCAS:
		o := client.PutOptions{Replication: w.Replication}
		if in.Op == OpCAS {
			o.CAS, o.Replication = &in.CAS, ""
		}
		var res client.WriteResult
		res, err = c.Put(octx, in.Key, []byte(in.Value), o)
		if err == nil {
			return Output{OK: true, Index: res.Index}, true
		}
		var e *client.Error
		if errors.As(err, &e) && e.Code == "cas_failed" {
			return Output{Current: e.Index}, true
		}
	case OpDelete:
		_, err = c.Delete(octx, in.Key, client.PutOptions{})
		if err == nil {
			return Output{OK: true}, true
		}
		if client.IsCode(err, "not_found") {
			return Output{}, true
		}
	}
	return writeFailure(err)
}

// writeFailure classifies a failed write. A 4xx or a 503 is a refusal:
// ringkv promises that such a write changed nothing, and the checker holds
// it to that. Anything else (504, other 5xx, a cut connection, a client
// timeout) leaves the outcome unknown.
func writeFailure(err error) (Output, bool) {
	var e *client.Error
	if errors.As(err, &e) && (e.Status < 500 || e.Status == http.StatusServiceUnavailable) {
		return Output{}, false
	}
	return Output{Unknown: true}, true
}
