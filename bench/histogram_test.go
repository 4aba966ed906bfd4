package bench

import (
	"math/rand"
	"sort"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	var h, a, b Histogram
	var all []time.Duration
	for i := 0; i < 100000; i++ {
		// Log-normal-ish latencies from 50 µs to seconds.
		d := time.Duration(50+rng.ExpFloat64()*rng.ExpFloat64()*2000) * time.Microsecond
		all = append(all, d)
		h.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(q*float64(len(all)-1))]
		for _, got := range []time.Duration{h.Quantile(q), a.Quantile(q)} {
			if diff := float64(got-want) / float64(want); diff > 0.02 || diff < -0.02 {
				t.Fatalf("q%.3f = %v, exact %v (%.1f%% off)", q, got, want, 100*diff)
			}
		}
	}
	if h.Max() != all[len(all)-1] || h.Count() != 100000 || a.Count() != 100000 {
		t.Fatalf("max %v (want %v), counts %d %d", h.Max(), all[len(all)-1], h.Count(), a.Count())
	}
}

func TestConfigAndKeyDistributions(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err == nil {
		t.Fatal("a config without endpoints validated")
	}
	cfg.Endpoints = []string{"http://127.0.0.1:1"}
	for _, bad := range []func(c *Config){
		func(c *Config) { c.Dist = "pareto" },
		func(c *Config) { c.Reads = 1.5 },
		func(c *Config) { c.Concurrency = 0 },
		func(c *Config) { c.Duration, c.Ops = 0, 0 },
		func(c *Config) { c.Replication = "eventual" },
	} {
		c := cfg
		bad(&c)
		if c.Validate() == nil {
			t.Fatalf("invalid config %+v validated", c)
		}
	}
	count := func(dist string) (top, n int) {
		c := cfg
		c.Dist, c.Keys = dist, 1000
		var seq atomic.Uint64
		pick := keyPicker(c, rand.New(rand.NewSource(1)), &seq)
		for i := 0; i < 100000; i++ {
			k := pick()
			if k >= 1000 {
				t.Fatalf("%s picked key %d of 1000", dist, k)
			}
			if k < 10 {
				top++
			}
		}
		return top, 100000
	}
	if top, n := count("uniform"); top > n/50 {
		t.Fatalf("uniform: the first 1%% of keys got %d of %d picks", top, n)
	}
	if top, n := count("zipfian"); top < n/3 {
		t.Fatalf("zipfian: the first 1%% of keys got only %d of %d picks", top, n)
	}
	// Sequential: every key once per round, in order.
	c := cfg
	c.Dist, c.Keys = "sequential", 1000
	var seq atomic.Uint64
	pick := keyPicker(c, nil, &seq)
	for i := 0; i < 2500; i++ {
		if k := pick(); k != uint64(i%1000) {
			t.Fatalf("sequential pick %d = %d", i, k)
		}
	}
}
