package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ringkv/ringkv/raftnode"
)

type metrics struct {
	latency *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry, b Backend) *metrics {
	m := &metrics{latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ringkv_http_request_duration_seconds",
		Help:    "HTTP request latency by route, method and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"route", "method", "code"})}
	reg.MustRegister(m.latency, &raftCollector{b: b},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// write deadlines of streams and long polls).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (m *metrics) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		m.latency.WithLabelValues(route, r.Method, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
	})
}

// raftCollector reports per-group Raft state at scrape time.
type raftCollector struct{ b Backend }

var (
	descState   = prometheus.NewDesc("ringkv_raft_state", "Raft state of the local replica: 0 shutdown, 1 follower, 2 candidate, 3 leader.", []string{"group"}, nil)
	descTerm    = prometheus.NewDesc("ringkv_raft_term", "Current Raft term.", []string{"group"}, nil)
	descCommit  = prometheus.NewDesc("ringkv_raft_commit_index", "Raft commit index.", []string{"group"}, nil)
	descApplied = prometheus.NewDesc("ringkv_raft_applied_index", "Index applied to the state machine.", []string{"group"}, nil)
	descLast    = prometheus.NewDesc("ringkv_raft_last_index", "Last index in the Raft log.", []string{"group"}, nil)
	descKeys    = prometheus.NewDesc("ringkv_group_keys", "Keys held by the local replica.", []string{"group"}, nil)
	descBytes   = prometheus.NewDesc("ringkv_group_state_bytes", "Size of the replica's state file.", []string{"group"}, nil)
	descLeader  = prometheus.NewDesc("ringkv_raft_has_leader", "1 when the group has a known leader.", []string{"group"}, nil)
	descDiverge = prometheus.NewDesc("ringkv_replica_divergences_total", "Verifications that found the local replica's Merkle root different from its group's.", []string{"group"}, nil)
	descRepairs = prometheus.NewDesc("ringkv_replica_repairs_total", "Divergent local replicas reinstalled from the group leader.", []string{"group"}, nil)
	descWaves   = prometheus.NewDesc("ringkv_proposal_waves_total", "Batches of writes the local replica handed to Raft as the group's leader.", []string{"group"}, nil)
	descWWrites = prometheus.NewDesc("ringkv_proposal_writes_total", "Writes those batches carried.", []string{"group"}, nil)
	descFlight  = prometheus.NewDesc("ringkv_proposal_flight_seconds", "Recent time a batch took from hand-over to Raft until applied (moving average).", []string{"group"}, nil)
	descLinger  = prometheus.NewDesc("ringkv_proposal_linger_seconds", "How long the leader lets the next batch gather after a batch of 4 or more writes, at most.", []string{"group"}, nil)
)

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descTerm, descCommit, descApplied, descLast, descKeys, descBytes, descLeader, descDiverge, descRepairs, descWaves, descWWrites, descFlight, descLinger} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Status()
	emit := func(g raftnode.GroupStatus) {
		l := strconv.FormatUint(uint64(g.ID), 10)
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, raftnode.StateValue(g.State), l)
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(g.Term), l)
		ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(g.CommitIndex), l)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(g.AppliedIndex), l)
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(g.LastIndex), l)
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(g.Keys), l)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(g.StateBytes), l)
		has := 0.0
		if g.Leader != "" {
			has = 1
		}
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, has, l)
		ch <- prometheus.MustNewConstMetric(descDiverge, prometheus.CounterValue, float64(g.Divergences), l)
		ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(g.Repairs), l)
		ch <- prometheus.MustNewConstMetric(descWaves, prometheus.CounterValue, float64(g.ProposalWaves), l)
		ch <- prometheus.MustNewConstMetric(descWWrites, prometheus.CounterValue, float64(g.ProposalWrites), l)
		ch <- prometheus.MustNewConstMetric(descFlight, prometheus.GaugeValue, g.ProposalFlightMs/1000, l)
		ch <- prometheus.MustNewConstMetric(descLinger, prometheus.GaugeValue, g.ProposalLingerMs/1000, l)
	}
	emit(st.Meta)
	for _, g := range st.Groups {
		emit(g)
	}
}
