package client

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// The balancers a Cluster can use for requests any node can serve
// (ClusterOptions.Balancer).
const (
	// BalanceRoundRobin takes the nodes in turn.
	BalanceRoundRobin = "round-robin"
	// BalanceWeighted takes them in turn in proportion to their weight
	// (ringkvd --weight): smooth weighted round-robin, as nginx does.
	BalanceWeighted = "weighted"
	// BalanceLeastOutstanding takes the node with the fewest requests in
	// flight from this client.
	BalanceLeastOutstanding = "least-outstanding"
	// BalanceLeastResponseTime compares two nodes drawn at random and
	// takes the one whose moving average of response times, scaled by
	// its requests in flight, is lower (the power of two choices over a
	// peak EWMA, as Finagle and Envoy do).
	BalanceLeastResponseTime = "least-response-time"
	// BalanceKeyHash sends each key (or path, for requests without one)
	// to the same node while it is up (rendezvous hashing), so that a
	// node's caches see the same keys.
	BalanceKeyHash = "key-hash"
)

// Balancers names every balancer, the default first.
var Balancers = []string{BalanceRoundRobin, BalanceWeighted, BalanceLeastOutstanding, BalanceLeastResponseTime, BalanceKeyHash}

// balancer picks one of the usable members (never an empty list) for a
// request; key is its key, or its path when it has none.
type balancer interface {
	pick(ms []*member, key string) *member
}

func newBalancer(name string) (balancer, error) {
	switch name {
	case "", BalanceRoundRobin:
		return &roundRobin{}, nil
	case BalanceWeighted:
		return &weighted{}, nil
	case BalanceLeastOutstanding:
		return leastOutstanding{}, nil
	case BalanceLeastResponseTime:
		return leastResponseTime{}, nil
	case BalanceKeyHash:
		return keyHash{}, nil
	}
	return nil, fmt.Errorf("client: unknown balancer %q (want one of %v)", name, Balancers)
}

type roundRobin struct{ next atomic.Uint64 }

func (b *roundRobin) pick(ms []*member, _ string) *member {
	return ms[(b.next.Add(1)-1)%uint64(len(ms))]
}

// weighted is smooth weighted round-robin: every pick adds each member's
// weight to its credit and takes the member with the most, which then
// pays the total; over any window the picks follow the weights, evenly
// interleaved.
type weighted struct {
	mu     sync.Mutex
	credit map[*member]float64
}

func (b *weighted) pick(ms []*member, _ string) *member {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.credit == nil || len(b.credit) > 4*len(ms)+16 {
		b.credit = map[*member]float64{} // forget members long gone
	}
	var best *member
	total := 0.0
	for _, m := range ms {
		w := m.weight()
		total += w
		b.credit[m] += w
		if best == nil || b.credit[m] > b.credit[best] {
			best = m
		}
	}
	b.credit[best] -= total
	return best
}

type leastOutstanding struct{}

func (leastOutstanding) pick(ms []*member, _ string) *member {
	start := rand.IntN(len(ms)) // ties go to a random member
	best := ms[start]
	for i := 1; i < len(ms); i++ {
		if m := ms[(start+i)%len(ms)]; m.outstanding.Load() < best.outstanding.Load() {
			best = m
		}
	}
	return best
}

type leastResponseTime struct{}

func (leastResponseTime) pick(ms []*member, _ string) *member {
	if len(ms) == 1 {
		return ms[0]
	}
	i := rand.IntN(len(ms))
	j := rand.IntN(len(ms) - 1)
	if j >= i {
		j++
	}
	now := time.Now()
	if a, b := ms[i], ms[j]; a.cost(now) <= b.cost(now) {
		return a
	}
	return ms[j]
}

type keyHash struct{}

// pick is rendezvous hashing: the member with the highest hash of its
// name and the key wins, so a key moves only when its member goes.
func (keyHash) pick(ms []*member, key string) *member {
	var best *member
	var bestScore uint64
	for _, m := range ms {
		if s := ring.Hash([]byte(m.name() + "\x00" + key)); best == nil || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// latency is a member's response times as a peak-sensitive moving
// average: a slower answer than the average moves it at once, faster
// ones move it by a decaying share, and with no answers for a while it
// decays towards zero so that a node once slow is tried again.
type latency struct {
	mu   sync.Mutex
	avg  float64 // nanoseconds
	last time.Time
}

// latencyDecay is the time constant of the average.
const latencyDecay = 2 * time.Second

func (l *latency) observe(d time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := float64(d)
	w := math.Exp(-float64(now.Sub(l.last)) / float64(latencyDecay))
	if l.last.IsZero() || s > l.avg {
		l.avg = s
	} else {
		l.avg = l.avg*w + s*(1-w)
	}
	l.last = now
}

// at is the average as it stands at now, decayed for the time without
// an answer.
func (l *latency) at(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		return 0
	}
	return l.avg * math.Exp(-float64(now.Sub(l.last))/float64(latencyDecay))
}
