package transport

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/chaos"
	"github.com/ringkv/ringkv/internal/testwait"
)

// raftPort is one Raft group (a single voter that leads itself) on a real
// Mux over TCP, with the network transport ringkv runs.
type raftPort struct {
	mux *Mux
	r   *raft.Raft
}

func newRaftPort(tb testing.TB) *raftPort {
	tb.Helper()
	m, err := NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		tb.Fatal(err)
	}
	layer, err := m.Layer(1)
	if err != nil {
		tb.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: 2, Timeout: time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard})})
	conf := raft.DefaultConfig()
	conf.LocalID = "self"
	conf.HeartbeatTimeout, conf.ElectionTimeout = 100*time.Millisecond, 100*time.Millisecond
	conf.LeaderLeaseTimeout, conf.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
	conf.LogOutput = io.Discard
	logs := raft.NewInmemStore()
	r, err := raft.NewRaft(conf, nopFSM{}, logs, logs, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "self", Address: trans.LocalAddr()}}}).Error(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		r.Shutdown().Error()
		m.Close()
	})
	return &raftPort{mux: m, r: r}
}

// send writes the mux header for group 1 and then b on a new connection,
// and waits until the node closes it (or a second passes).
func (p *raftPort) send(tb testing.TB, b []byte) {
	tb.Helper()
	c, err := net.Dial("tcp", p.mux.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	self := "127.0.0.1:1"
	hdr := []byte{muxMagic, muxVersion, 0, 0, 0, 0, byte(len(self))}
	binary.BigEndian.PutUint32(hdr[2:6], 1)
	c.Write(append(append(hdr, self...), b...))
	// The node reads to the end of what was sent, answers, and closes.
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, c)
}

// FuzzRaftPort sends arbitrary bytes after a valid header to a group's
// Raft port. A panic anywhere in the process fails the target; so does a
// group that shut down or took a term past raft.MaxRPCTerm (a term near
// 2^64 wraps at the next election). The seeds are the forged RPCs of the
// hostile suite.
func FuzzRaftPort(f *testing.F) {
	for _, rpc := range chaos.ForgedRPCs(2) {
		f.Add(rpc.Bytes)
	}
	f.Add([]byte{2, 0x80})
	p := newRaftPort(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p.send(t, b)
		if p.r.State() == raft.Shutdown {
			t.Fatal("the group shut down")
		}
		if term := p.r.CurrentTerm(); term > raft.MaxRPCTerm {
			t.Fatalf("the group took term %d", term)
		}
	})
}

// The forged RPCs that once wedged or stopped a group are refused: the
// group keeps a sane term, stays up and leads itself again.
func TestForgedRaftRPCsAreRefused(t *testing.T) {
	p := newRaftPort(t)
	testwait.For(t, "a leader", func() bool { return p.r.State() == raft.Leader })
	for _, rpc := range chaos.ForgedRPCs(p.r.CurrentTerm()) {
		p.send(t, rpc.Bytes)
		if term := p.r.CurrentTerm(); term > raft.MaxRPCTerm {
			t.Fatalf("%s: the group took term %d", rpc.Name, term)
		}
		testwait.For(t, rpc.Name+": the group leads itself again", func() bool {
			return p.r.State() == raft.Leader && p.r.Barrier(time.Second).Error() == nil
		})
	}
}

// nopFSM applies nothing; the fuzz target looks at raft itself.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) interface{}         { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}
