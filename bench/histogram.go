package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBuckets is the number of linear buckets per power of two: the
// relative error of a recorded value is at most 1/subBuckets.
const subBuckets = 64

// Histogram records durations with bounded relative error. The zero value
// is ready; it is not safe for concurrent use (merge per-client ones).
type Histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
	sum    time.Duration
}

// bucket maps a value in microseconds (>= 1) to its bucket.
func bucket(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - 7 // us >> exp lies in [64, 128)
	return (exp+1)*subBuckets + int(us>>exp) - subBuckets
}

// lowest is the smallest value in microseconds of bucket b.
func lowest(b int) uint64 {
	if b < subBuckets {
		return uint64(b)
	}
	exp := b/subBuckets - 1
	return uint64(b%subBuckets+subBuckets) << exp
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	b := bucket(us)
	if b >= len(h.counts) {
		h.counts = append(h.counts, make([]uint64, b+1-len(h.counts))...)
	}
	h.counts[b]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if len(o.counts) > len(h.counts) {
		h.counts = append(h.counts, make([]uint64, len(o.counts)-len(h.counts))...)
	}
	for i, c := range o.counts {
		h.counts[i] += c
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

// Quantile returns the value below which a fraction q of the records lie,
// as the middle of its bucket (never above Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lowest(b), lowest(b+1)
			mid := time.Duration((lo+hi)/2) * time.Microsecond
			return min(mid, h.max)
		}
	}
	return h.max
}
