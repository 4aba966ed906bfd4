package raftnode

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/internal/testwait"
)

// gatedStore is a log store whose appends can be held: while held, an
// append waits until released (and then fails if fail is set).
type gatedStore struct {
	*raft.InmemStore
	mu      sync.Mutex
	gate    chan struct{} // nil: appends go through
	fail    bool
	waiting atomic.Int32 // appends held right now
}

// hold makes the next append wait until release is called (and fail
// then, if fail is set). A test that ends early releases it, so that Raft
// can shut down.
func (s *gatedStore) hold(t *testing.T, fail bool) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gate, s.fail = gate, fail
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

func (s *gatedStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	gate, fail := s.gate, s.fail
	s.mu.Unlock()
	if gate != nil {
		s.waiting.Add(1)
		<-gate
		s.waiting.Add(-1)
		s.mu.Lock()
		s.gate = nil
		s.mu.Unlock()
		if fail {
			return fmt.Errorf("disk failed")
		}
	}
	return s.InmemStore.StoreLogs(logs)
}

func (s *gatedStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

type countFSM struct{ n atomic.Int64 }

func (f *countFSM) Apply(*raft.Log) interface{}         { return f.n.Add(1) }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (f *countFSM) Restore(io.ReadCloser) error         { return nil }

type testRaft struct {
	r     *raft.Raft
	logs  *gatedStore
	fsm   *countFSM
	trans *raft.InmemTransport
}

// threeRafts starts three Raft peers on in-memory transports and returns
// them with the leader first.
func threeRafts(t *testing.T) []*testRaft {
	t.Helper()
	var peers []*testRaft
	var servers []raft.Server
	for i := range 3 {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("p%d", i)))
		peers = append(peers, &testRaft{logs: &gatedStore{InmemStore: raft.NewInmemStore()}, fsm: &countFSM{}, trans: trans})
		servers = append(servers, raft.Server{ID: raft.ServerID(addr), Address: addr})
	}
	for _, a := range peers {
		for _, b := range peers {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	for _, p := range peers {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(p.trans.LocalAddr())
		conf.HeartbeatTimeout, conf.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
		conf.LeaderLeaseTimeout, conf.CommitTimeout = 100*time.Millisecond, 5*time.Millisecond
		conf.LogOutput = io.Discard
		r, err := raft.NewRaft(conf, p.fsm, p.logs, raft.NewInmemStore(), raft.NewDiscardSnapshotStore(), p.trans)
		if err != nil {
			t.Fatal(err)
		}
		p.r = r
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Shutdown().Error() })
	}
	leader := -1
	testwait.For(t, "a leader", func() bool {
		for i, p := range peers {
			if p.r.State() == raft.Leader && p.r.Barrier(5*time.Second).Error() == nil {
				leader = i
				return true
			}
		}
		return false
	})
	peers[0], peers[leader] = peers[leader], peers[0]
	return peers
}

// ringkv's hashicorp/raft (third_party/raft) replicates a leader's new
// entries while the leader's own append is in progress, and counts the
// leader only once that append is done: an entry is never acknowledged
// before the leader stored it, yet the followers' appends no longer wait
// for the leader's.
func TestLeaderReplicatesWhileItsOwnAppendRuns(t *testing.T) {
	peers := threeRafts(t)
	leader := peers[0]
	index := leader.r.LastIndex() + 1
	release := leader.logs.hold(t, false)
	f := leader.r.Apply([]byte("x"), 10*time.Second)
	testwait.For(t, "the leader's append to start", func() bool { return leader.logs.waiting.Load() == 1 })
	for _, p := range peers[1:] {
		testwait.For(t, "followers to store the entry while the leader's append is held", func() bool {
			last, _ := p.logs.LastIndex()
			return last >= index
		})
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		t.Fatalf("the entry was acknowledged (%v) before the leader stored it", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("apply: %v", err)
	}
	if last, _ := leader.logs.LastIndex(); last < index {
		t.Fatalf("the leader's log ends at %d, before the acknowledged entry %d", last, index)
	}
	for _, p := range peers {
		testwait.For(t, "every peer to apply the entry", func() bool { return p.fsm.n.Load() == 1 })
	}
}

// When the leader's own append fails, the write is not acknowledged as
// done, the leader steps down, and the entry's fate is left to the next
// leader (its followers may hold it): ringkv reports such a write's outcome
// as unknown.
func TestLeaderAppendFailureStepsDown(t *testing.T) {
	peers := threeRafts(t)
	leader := peers[0]
	release := leader.logs.hold(t, true)
	f := leader.r.Apply([]byte("x"), 10*time.Second)
	testwait.For(t, "the leader's append to start", func() bool { return leader.logs.waiting.Load() == 1 })
	release()
	if err := f.Error(); err == nil {
		t.Fatal("a write whose leader could not store it was acknowledged")
	}
	testwait.For(t, "the leader to step down", func() bool { return leader.r.State() != raft.Leader || leader.r.Leader() == "" })
	// The group goes on: a new write commits on every peer, after the
	// held entry if a follower kept it.
	testwait.For(t, "a new write to commit", func() bool {
		for _, p := range peers {
			if p.r.State() == raft.Leader && p.r.Apply([]byte("y"), 5*time.Second).Error() == nil {
				return true
			}
		}
		return false
	})
	testwait.For(t, "every peer to apply the same entries", func() bool {
		n := peers[0].fsm.n.Load()
		return n >= 1 && peers[1].fsm.n.Load() == n && peers[2].fsm.n.Load() == n
	})
}
