package links

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echo serves lines back on a local port until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through conn and waits for it to come back.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got) != msg {
		t.Fatalf("echoed %q, want %q", got, msg)
	}
	return time.Since(start)
}

// A request and its answer through a link each pay the one-way latency.
// Only the lower bound is checked: a busy machine makes a round trip
// longer, never shorter.
func TestLinkDelaysBothDirections(t *testing.T) {
	n := New()
	defer n.Close()
	l, err := n.Front("echo", echo(t), Shape{Latency: 25 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		if rtt := roundTrip(t, c, r, "ping"); rtt < 50*time.Millisecond {
			t.Fatalf("round trip %v through a 25ms link, want at least 50ms (25ms each way)", rtt)
		}
	}
	// A new shape applies to the open connection at once.
	if err := l.Set(Shape{Latency: 60 * time.Millisecond, Jitter: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if rtt := roundTrip(t, c, r, "pong"); rtt < 100*time.Millisecond {
		t.Fatalf("round trip %v after the link went to 60ms ±10ms, want at least 100ms", rtt)
	}
	if got := l.Shape(); got.Latency != 60*time.Millisecond || got.Jitter != 10*time.Millisecond {
		t.Fatalf("shape %v", got)
	}
	// Back to no latency: the toxics are gone, not set to zero.
	if err := l.Set(Shape{}); err != nil {
		t.Fatal(err)
	}
	if toxics := l.p.Toxics.GetToxicArray(); len(toxics) != 0 {
		t.Fatalf("%d toxics left on a link with no shape", len(toxics))
	}
	roundTrip(t, c, r, "still there")
}

// A bandwidth cap slows a transfer larger than what the cap lets through
// in the time it took.
func TestLinkCapsBandwidth(t *testing.T) {
	n := New()
	defer n.Close()
	// 200 KB/s: 100 KB each way take at least half a second each.
	l, err := n.Front("echo", echo(t), Shape{Bandwidth: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.Repeat("x", 100_000)
	if took := roundTrip(t, c, bufio.NewReaderSize(c, 1<<20), msg); took < 500*time.Millisecond {
		t.Fatalf("100 KB each way through a 200 KB/s link took %v, want at least 500ms", took)
	}
}

func TestLinkCutAndRestore(t *testing.T) {
	n := New()
	l, err := n.Front("echo", echo(t), Shape{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "before")
	l.Cut()
	// The open connection is closed...
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a connection through a cut link still reads")
	}
	c.Close()
	// ...and new ones are refused.
	if c2, err := net.Dial("tcp", l.Addr()); err == nil {
		c2.Close()
		t.Fatal("a cut link accepted a connection")
	}
	if err := l.Restore(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c3, bufio.NewReader(c3), "after")
	c3.Close()
	n.Close()
	n.Close() // twice is fine
	if c4, err := net.Dial("tcp", l.Addr()); err == nil {
		c4.Close()
		t.Fatal("a closed net's link still accepts")
	}
	if _, err := n.Front("late", "127.0.0.1:1", Shape{}); err == nil {
		t.Fatal("a closed net started a link")
	}
}

func TestShapeCheck(t *testing.T) {
	for _, s := range []Shape{
		{Latency: -time.Millisecond},
		{Latency: 1500 * time.Microsecond},
		{Latency: time.Millisecond, Jitter: 2 * time.Millisecond},
		{Bandwidth: 10},
		{Latency: 2 * time.Minute},
	} {
		if s.Check() == nil {
			t.Errorf("%+v passed the check", s)
		}
	}
	for _, s := range []Shape{{}, {Latency: 10 * time.Millisecond, Jitter: 2 * time.Millisecond, Bandwidth: 12_500_000}} {
		if err := s.Check(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	if got := (Shape{Latency: 10 * time.Millisecond, Jitter: 2 * time.Millisecond, Bandwidth: 12_500_000}).String(); got != "10ms ±2ms, 100mbit" {
		t.Errorf("String() = %q", got)
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]int64{
		"": 0, "0": 0, "100mbit": 12_500_000, "1gbit": 125_000_000, "500kbit": 62_500,
		"10MB": 10_000_000, "64kb": 64_000, " 2.5 Mbit ": 312_500,
	} {
		got, err := ParseBandwidth(in)
		if err != nil || got != want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "100", "-5mbit", "mbit", "1e9gbit"} {
		if _, err := ParseBandwidth(in); err == nil {
			t.Errorf("ParseBandwidth(%q) passed", in)
		}
	}
}

func TestRegionGeometry(t *testing.T) {
	g, err := Geometry([]string{"us-east", "eu-west", "ap-south"})
	if err != nil {
		t.Fatal(err)
	}
	// Half the published round trips (us-east-1/eu-west-1 70 and 69 ms,
	// us-east-1/ap-south-1 186 and 185, eu-west-1/ap-south-1 120), whole
	// ms, the same both ways.
	want := [][]time.Duration{{0, 35 * time.Millisecond, 93 * time.Millisecond},
		{35 * time.Millisecond, 0, 60 * time.Millisecond}, {93 * time.Millisecond, 60 * time.Millisecond, 0}}
	for i := range want {
		for j := range want {
			if g[i][j] != want[i][j] {
				t.Errorf("%d->%d: %v, want %v", i, j, g[i][j], want[i][j])
			}
		}
	}
	// Two nodes in one region: half its own 4 ms round trip apart, both
	// 35ms from the third. Codes and short names are the same regions.
	g, err = Geometry([]string{"us-east-1", "us-east", "eu-west-1"})
	if err != nil || g[0][1] != 2*time.Millisecond || g[1][0] != 2*time.Millisecond || g[0][2] != 35*time.Millisecond || g[2][1] != 35*time.Millisecond {
		t.Fatalf("%v %v", g, err)
	}
	if _, err := Geometry([]string{"us-east", "mars"}); err == nil || !strings.Contains(err.Error(), "mars") {
		t.Fatalf("an unknown region: %v", err)
	}
	if _, err := Geometry([]string{"us-east", "us-east-10"}); err == nil {
		t.Fatal("us-east-10 passed as us-east")
	}
	for _, r := range Regions() {
		for _, q := range Regions() {
			d, err := RegionLatency(r, q)
			if err != nil || d < time.Millisecond || d%time.Millisecond != 0 {
				t.Errorf("%s-%s: %v %v", r, q, d, err)
			}
		}
	}
}
