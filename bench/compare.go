package bench

import (
	"context"
	"fmt"
	"time"
)

// Mode is one side of a comparison: a name and how its runs differ.
type Mode struct {
	Name  string
	Apply func(*Config)
}

// ModeResult is one mode's runs merged.
type ModeResult struct {
	Name    string        `json:"name"`
	Rounds  int           `json:"rounds"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Errors  uint64        `json:"errors"`
	Stats   OpStats       `json:"stats"`
	// Percentiles are (quantile, latency) points for plotting.
	Percentiles []Point `json:"percentiles"`
}

// Point is one point of a latency distribution.
type Point struct {
	Q       float64       `json:"q"`
	Latency time.Duration `json:"latency_ns"`
}

// Compare runs the same workload in each mode, rounds times, alternating
// which goes first so that drifting machine load hits every mode alike,
// and merges each mode's rounds.
func Compare(ctx context.Context, cfg Config, modes []Mode, rounds int, onRound func(round int, mode string, r Result)) ([]ModeResult, error) {
	if rounds < 1 {
		return nil, fmt.Errorf("bench: rounds must be at least 1")
	}
	hist := make([]Histogram, len(modes))
	out := make([]ModeResult, len(modes))
	for round := 0; round < rounds; round++ {
		for k := range modes {
			i := k
			if round%2 == 1 {
				i = len(modes) - 1 - k
			}
			c := cfg
			modes[i].Apply(&c)
			r, err := Run(ctx, c)
			if err != nil {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			hist[i].Merge(r.Latencies)
			out[i].Elapsed += r.Elapsed
			out[i].Errors += r.All.Errors
			out[i].Rounds++
			if onRound != nil {
				onRound(round, modes[i].Name, r)
			}
		}
	}
	for i := range modes {
		out[i].Name = modes[i].Name
		out[i].Stats = Stats(&hist[i], out[i].Elapsed)
		out[i].Stats.Errors = out[i].Errors
		for _, q := range plotQuantiles {
			out[i].Percentiles = append(out[i].Percentiles, Point{Q: q, Latency: hist[i].Quantile(q)})
		}
	}
	return out, nil
}

// plotQuantiles are where a distribution is sampled for plotting: even
// steps to the median, then closer and closer to the tail.
var plotQuantiles = []float64{0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1}

// SweepPoint is one link latency of a sweep and the modes measured at it.
type SweepPoint struct {
	// LinkLatency is the one-way latency of every link between nodes.
	LinkLatency time.Duration `json:"link_latency_ns"`
	Modes       []ModeResult  `json:"modes"`
}
