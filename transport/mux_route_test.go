package transport

import (
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
)

// forwarder passes connections to upstream and counts them: a stand-in
// for a link between two nodes.
func forwarder(t *testing.T, upstream string) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String(), &n
}

// Route makes a node dial a peer through another address (its link to
// that peer); the peer still sees the node, and Route(nil) dials
// directly again.
func TestMuxRoutesDialsThroughLinks(t *testing.T) {
	b, bl := muxOf(t, nil, nil, 1)
	a, al := muxOf(t, nil, nil, 1)
	bAddr := raft.ServerAddress(b.Addr().String())
	via, through := forwarder(t, b.Addr().String())

	a.Route(map[string]string{string(bAddr): via})
	carries(t, "a dials b through its link", al[1], bl[1], bAddr)
	if n := through.Load(); n != 1 {
		t.Fatalf("%d connections crossed the link, want 1", n)
	}
	a.Route(nil)
	carries(t, "a dials b directly", al[1], bl[1], bAddr)
	if n := through.Load(); n != 1 {
		t.Fatalf("a direct dial crossed the link (%d connections)", n)
	}
	// Blocking wins over a route.
	a.Route(map[string]string{string(bAddr): via})
	a.Block([]string{string(bAddr)})
	if _, err := al[1].Dial(bAddr, 0); err == nil {
		t.Fatal("a blocked peer was dialled through its link")
	}
}
