// Package links emulates the network links between nodes in user space:
// a proxy fronts a node's port and gives the traffic through it a one-way
// latency, jitter and a bandwidth cap, or cuts it. The proxies are
// Shopify's toxiproxy, run in this process (the kernel's netem is not
// always there, and needs privileges when it is).
//
// A link fronts a node's inbound traffic: every connection another node
// opens to it passes through the proxy, which delays what flows each way,
// so a request and its answer together take two one-way latencies, as on
// a real link. The node advertises the proxy's address to its peers.
package links

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Shape is what a link does to the traffic through it, in each direction.
type Shape struct {
	// Latency is the one-way delay, in whole milliseconds (toxiproxy's
	// step).
	Latency time.Duration
	// Jitter varies each delay by up to this much either way, uniformly.
	Jitter time.Duration
	// Bandwidth caps each direction, in bytes per second; 0 is no cap.
	Bandwidth int64
}

// Check reports a shape toxiproxy cannot give.
func (s Shape) Check() error {
	switch {
	case s.Latency < 0 || s.Jitter < 0 || s.Bandwidth < 0:
		return errors.New("links: latency, jitter and bandwidth cannot be negative")
	case s.Latency%time.Millisecond != 0 || s.Jitter%time.Millisecond != 0:
		return fmt.Errorf("links: latency %v and jitter %v must be whole milliseconds", s.Latency, s.Jitter)
	case s.Jitter > s.Latency:
		return fmt.Errorf("links: jitter %v exceeds the latency %v (a delay cannot be negative)", s.Jitter, s.Latency)
	case s.Bandwidth != 0 && s.Bandwidth < 1000:
		return fmt.Errorf("links: bandwidth %d B/s is below toxiproxy's step of 1000 B/s", s.Bandwidth)
	case s.Latency > time.Minute:
		return fmt.Errorf("links: latency %v is more than a minute", s.Latency)
	}
	return nil
}

// String describes the shape: "10ms ±2ms, 100mbit".
func (s Shape) String() string {
	out := s.Latency.String()
	if s.Jitter > 0 {
		out += " ±" + s.Jitter.String()
	}
	if s.Bandwidth > 0 {
		out += ", " + FormatBandwidth(s.Bandwidth)
	}
	return out
}

// ParseBandwidth reads a rate such as "100mbit", "1gbit", "500kbit" (bits
// per second, decimal units) or "10MB" (bytes per second) into bytes per
// second. "0" or "" is no cap.
func ParseBandwidth(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" || t == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		bytes  float64 // bytes per second of one unit
	}{
		{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
		{"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"b", 1},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v < 0 || v > 1e6 {
				break
			}
			return int64(v * u.bytes), nil
		}
	}
	return 0, fmt.Errorf("links: bandwidth %q: want a number and a unit: kbit, mbit, gbit (bits per second) or KB, MB, GB (bytes per second)", s)
}

// FormatBandwidth writes bytes per second as bits per second.
func FormatBandwidth(b int64) string {
	bits := float64(b) * 8
	switch {
	case bits >= 1e9:
		return strconv.FormatFloat(bits/1e9, 'f', -1, 64) + "gbit"
	case bits >= 1e6:
		return strconv.FormatFloat(bits/1e6, 'f', -1, 64) + "mbit"
	default:
		return strconv.FormatFloat(bits/1e3, 'f', -1, 64) + "kbit"
	}
}

// Net holds the links of one run; Close tears them all down.
type Net struct {
	srv *toxiproxy.ApiServer

	mu     sync.Mutex
	links  []*Link
	closed bool
}

// New returns an empty Net.
func New() *Net {
	// Toxiproxy logs every connection, some of it through zerolog's
	// global logger; ringkv's runs need none of that.
	zerolog.SetGlobalLevel(zerolog.ErrorLevel)
	return &Net{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())}
}

// Link is one proxy: it listens on Addr and passes what it receives to
// its upstream, shaped.
type Link struct {
	p        *toxiproxy.Proxy
	addr     string
	upstream string

	mu    sync.Mutex
	shape Shape
}

// Front starts a link on a free port of 127.0.0.1 in front of upstream.
func (n *Net) Front(name, upstream string, s Shape) (*Link, error) {
	return n.FrontOn(name, "127.0.0.1:0", upstream, s)
}

// FrontOn starts a link listening on listen in front of upstream.
func (n *Net) FrontOn(name, listen, upstream string, s Shape) (*Link, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("links: closed")
	}
	p := toxiproxy.NewProxy(n.srv, name, listen, upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("links: %s on %s: %w", name, listen, err)
	}
	l := &Link{p: p, addr: p.Listen, upstream: upstream}
	if err := l.Set(s); err != nil {
		p.Stop()
		return nil, err
	}
	n.links = append(n.links, l)
	return l, nil
}

// Addr is where the link listens.
func (l *Link) Addr() string { return l.addr }

// Upstream is where the link sends.
func (l *Link) Upstream() string { return l.upstream }

// Shape is the link's shape now.
func (l *Link) Shape() Shape {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shape
}

// Set gives the link a new shape; open connections take it at once.
func (l *Link) Set(s Shape) error {
	if err := s.Check(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dir := range []string{"upstream", "downstream"} {
		if err := l.setToxic("latency_"+dir, "latency", dir, s.Latency > 0, map[string]int64{
			"latency": s.Latency.Milliseconds(), "jitter": s.Jitter.Milliseconds()}); err != nil {
			return err
		}
		// toxiproxy's rate is in units of 1000 bytes per second.
		if err := l.setToxic("bandwidth_"+dir, "bandwidth", dir, s.Bandwidth > 0, map[string]int64{
			"rate": s.Bandwidth / 1000}); err != nil {
			return err
		}
	}
	l.shape = s
	return nil
}

// setToxic adds, updates or removes (when !on) the named toxic.
func (l *Link) setToxic(name, typ, stream string, on bool, attrs map[string]int64) error {
	tc := l.p.Toxics
	have := tc.GetToxic(name) != nil
	switch {
	case !on && have:
		return tc.RemoveToxic(context.Background(), name)
	case !on:
		return nil
	}
	body, _ := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
	var err error
	if have {
		_, err = tc.UpdateToxicJson(name, strings.NewReader(string(body)))
	} else {
		_, err = tc.AddToxicJson(strings.NewReader(string(body)))
	}
	if err != nil {
		return fmt.Errorf("links: %s: %w", name, err)
	}
	return nil
}

// Cut closes the link's connections and refuses new ones until Restore.
func (l *Link) Cut() { l.p.Stop() }

// Restore reopens a cut link on the same address.
func (l *Link) Restore() error {
	err := l.p.Start()
	if errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return nil
	}
	return err
}

// Close stops every link: their listeners close and their connections
// drop. Close is safe to call more than once.
func (n *Net) Close() {
	n.mu.Lock()
	links := n.links
	n.links, n.closed = nil, true
	n.mu.Unlock()
	for _, l := range links {
		l.p.Stop()
	}
}
