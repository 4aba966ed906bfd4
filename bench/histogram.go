package bench

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The recorded range and precision: microseconds up to an hour, with two
// significant digits (a recorded value is off by at most 1%), about 25 KB
// per histogram.
const (
	highestMicros = int64(time.Hour / time.Microsecond)
	sigDigits     = 2
)

// Histogram records durations with bounded relative error (an HDR
// histogram), keeping the exact maximum and sum beside it. The zero value
// is ready; it is not safe for concurrent use (merge per-client ones).
type Histogram struct {
	h   *hdrhistogram.Histogram
	n   uint64
	max time.Duration
	sum time.Duration
}

func (h *Histogram) hdr() *hdrhistogram.Histogram {
	if h.h == nil {
		h.h = hdrhistogram.New(1, highestMicros, sigDigits)
	}
	return h.h
}

// Record adds one duration (longer than an hour counts as an hour).
func (h *Histogram) Record(d time.Duration) {
	h.hdr().RecordValue(min(max(d.Microseconds(), 0), highestMicros))
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.h != nil {
		h.hdr().Merge(o.h)
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of records.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest record.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average record.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the value below which a fraction q of the records lie
// (never above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	v := time.Duration(h.h.ValueAtQuantile(100*q)) * time.Microsecond
	return min(v, h.max)
}
