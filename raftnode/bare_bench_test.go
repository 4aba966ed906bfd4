package raftnode_test

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkBareRaft is the ceiling of the libraries ringkv is built on,
// with nothing of ringkv in the way: hashicorp/raft groups of 3 voters
// with raft-boltdb logs behind a log cache (as ringkv has them) and TCP
// transports on loopback, a state machine
// that only counts, and closed-loop callers of Apply spread over the
// groups' leaders, one 150-byte command per Apply. Compare its applies/s
// and CPU per apply with BenchmarkPut and with ringkv bench to see what
// ringkv's own layers (HTTP, forwarding, the bbolt state machine) cost.
func BenchmarkBareRaft(b *testing.B) {
	// The testing package calls each sub-benchmark several times with
	// growing b.N; the groups are started once and live until the end.
	started := map[int][]*raft.Raft{}
	parent := b
	for _, bc := range []struct{ groups, conc int }{{1, 64}, {3, 64}, {3, 256}} {
		b.Run(fmt.Sprintf("groups=%d/conc=%d", bc.groups, bc.conc), func(b *testing.B) {
			leaders, ok := started[bc.groups]
			if !ok {
				leaders = startBareGroups(parent, bc.groups)
				started[bc.groups] = leaders
			}
			cmd := make([]byte, 150)
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu0 := processCPU()
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < bc.conc; w++ {
				wg.Add(1)
				go func(l *raft.Raft) {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := l.Apply(cmd, 10*time.Second).Error(); err != nil {
							b.Error(err)
							return
						}
					}
				}(leaders[w%len(leaders)])
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "applies/s")
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/apply")
		})
	}
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countingFSM struct{ n atomic.Uint64 }

func (f *countingFSM) Apply(*raft.Log) interface{} { f.n.Add(1); return nil }
func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnapshot(f.n.Load()), nil
}
func (f *countingFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	_, err := fmt.Fprintf(sink, "%d", uint64(s))
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (countSnapshot) Release() {}

// startBareGroups starts groups Raft groups of 3 voters each, group g led
// by its voter g%3 as ringkv spreads leaders, and returns the leaders.
func startBareGroups(b *testing.B, groups int) []*raft.Raft {
	b.Helper()
	var leaders []*raft.Raft
	for g := 0; g < groups; g++ {
		var cfg raft.Configuration
		var transports []*raft.NetworkTransport
		for n := 0; n < 3; n++ {
			tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 8, 10*time.Second, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			transports = append(transports, tr)
			cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(fmt.Sprint(n)), Address: tr.LocalAddr()})
		}
		first := g % 3
		var nodes []*raft.Raft
		for n := 0; n < 3; n++ {
			logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(b.TempDir(), "raft.db")})
			if err != nil {
				b.Fatal(err)
			}
			cache, err := raft.NewLogCache(1024, logs)
			if err != nil {
				b.Fatal(err)
			}
			conf := raft.DefaultConfig()
			conf.LocalID = raft.ServerID(fmt.Sprint(n))
			conf.Logger = hclog.NewNullLogger()
			conf.BatchApplyCh = true
			conf.MaxAppendEntries = 256
			if n != first {
				// Only the chosen voter campaigns first.
				conf.HeartbeatTimeout, conf.ElectionTimeout = 5*time.Second, 5*time.Second
			}
			r, err := raft.NewRaft(conf, &countingFSM{}, cache, logs, raft.NewInmemSnapshotStore(), transports[n])
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				r.Shutdown().Error()
				logs.Close()
			})
			nodes = append(nodes, r)
		}
		if err := nodes[first].BootstrapCluster(cfg).Error(); err != nil {
			b.Fatal(err)
		}
		tick := time.NewTicker(10 * time.Millisecond)
		deadline := time.Now().Add(30 * time.Second)
		for nodes[first].State() != raft.Leader {
			if time.Now().After(deadline) {
				b.Fatalf("group %d: no leader after 30s", g)
			}
			<-tick.C
		}
		tick.Stop()
		leaders = append(leaders, nodes[first])
	}
	return leaders
}
