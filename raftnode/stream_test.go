package raftnode

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/layout"
	"github.com/ringkv/ringkv/protocol"
	"github.com/ringkv/ringkv/transport"
)

// startLoneNode starts a one-node cluster with one group and waits until
// it leads that group.
func startLoneNode(t *testing.T) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.HTTPAddr, cfg.RaftAddr, cfg.DataDir = "n1", "127.0.0.1:1", "127.0.0.1:0", t.TempDir()
	cfg.Groups = 1
	cfg.Timing.Heartbeat, cfg.Timing.Election, cfg.Timing.LeaderLease = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	cfg.Logger = quietLogger()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if r := n.replica(1); r != nil && r.isLeader() {
			return n
		}
		select {
		case <-deadline:
			t.Fatal("the lone node never led group 1")
		case <-tick.C:
		}
	}
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// A node serves forwarding streams on its Raft port: a peer's forwarder
// puts and reads back through them, learns the node's protocol version
// from the greeting, and a request the node refuses comes back as a bad
// request on the same stream.
func TestNodeServesForwardingStreams(t *testing.T) {
	n := startLoneNode(t)
	cm, err := transport.NewMux("127.0.0.1:0", "", nil, nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	sl, _ := cm.Layer(protocol.StreamGroup)
	hl, _ := cm.Layer(transport.PeerHTTPGroup)
	f := protocol.NewForwarder()
	f.UseStreams(sl)
	f.UsePeerLayer(hl)
	defer f.Close()
	info := layout.NodeInfo{ID: "n1", RaftAddr: "127.0.0.1:" + portOf(t, n.cfg.AdvertiseRaft)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := protocol.Request{Op: protocol.OpPut, Group: 1, Key: []byte("k"), Value: []byte("hello")}
	if resp, err := f.To(ctx, info, put); err != nil || resp.Write == nil || resp.Write.Index == 0 {
		t.Fatalf("put: %+v %v", resp, err)
	}
	get := protocol.Request{Op: protocol.OpGet, Group: 1, Key: []byte("k")}
	if resp, err := f.To(ctx, info, get); err != nil || resp.Entry == nil || string(resp.Entry.Value) != "hello" || resp.ServedBy != "n1" {
		t.Fatalf("get: %+v %v", resp, err)
	}
	if v, ok := f.PeerVersion(info.RaftAddr); !ok || v != protocol.Version {
		t.Fatalf("the node's protocol version: %d %v, want %d", v, ok, protocol.Version)
	}
	if _, err := f.To(ctx, info, protocol.Request{Op: protocol.OpPut, Group: 1}); !errors.Is(err, base.ErrBadRequest) {
		t.Fatalf("a put without a key: %v, want a bad request", err)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
