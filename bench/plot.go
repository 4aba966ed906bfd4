package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

var plotColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}

// WriteSVG draws the modes' latency distributions (latency against
// percentile, the tail stretched out) and their throughputs side by side,
// in one picture.
func WriteSVG(w io.Writer, title string, modes []ModeResult) error {
	const (
		width, height  = 960, 440
		lx, ly, lw, lh = 70.0, 60.0, 560.0, 320.0  // latency panel
		bx, by, bw, bh = 720.0, 60.0, 200.0, 320.0 // throughput panel
		tailCap        = 0.99999
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="28" font-size="16" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))

	// Latency panel: x is -log10(1-q), so 90%, 99%, 99.9% are evenly spaced.
	xOf := func(q float64) float64 {
		q = math.Min(q, tailCap)
		return lx + lw*(-math.Log10(1-q))/(-math.Log10(1-tailCap))
	}
	var maxLat time.Duration
	for _, m := range modes {
		for _, p := range m.Percentiles {
			maxLat = max(maxLat, p.Latency)
		}
	}
	maxMS := niceCeil(float64(maxLat) / float64(time.Millisecond))
	yOf := func(d time.Duration) float64 { return ly + lh - lh*(float64(d)/float64(time.Millisecond))/maxMS }
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#888"/>`+"\n", lx, ly, lw, lh)
	for i := 0; i <= 4; i++ {
		v := maxMS * float64(i) / 4
		y := ly + lh - lh*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/><text x="%g" y="%g" text-anchor="end">%g ms</text>`+"\n", lx, lx+lw, y, y, lx-6, y+4, v)
	}
	for _, q := range []struct {
		q     float64
		label string
	}{{0, "0%"}, {0.9, "90%"}, {0.99, "99%"}, {0.999, "99.9%"}, {0.9999, "99.99%"}, {tailCap, "max"}} {
		x := xOf(q.q)
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/><text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", x, x, ly, ly+lh, x, ly+lh+16, q.label)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">percentile of writes (latency at or below)</text>`+"\n", lx+lw/2, ly+lh+34)
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="14">latency</text>`+"\n", lx, ly-10)
	for i, m := range modes {
		var pts []string
		for _, p := range m.Percentiles {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(p.Q), yOf(p.Latency)))
		}
		c := plotColors[i%len(plotColors)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.5" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="14" height="4" fill="%s"/><text x="%g" y="%g">%s: p50 %.1f ms, p99 %.1f ms</text>`+"\n",
			lx+12, ly+14+float64(i)*18, c, lx+32, ly+20+float64(i)*18, html.EscapeString(m.Name),
			ms(m.Stats.P50), ms(m.Stats.P99))
	}

	// Throughput panel.
	var maxTP float64
	for _, m := range modes {
		maxTP = math.Max(maxTP, m.Stats.Throughput)
	}
	maxTP = niceCeil(maxTP)
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="14">throughput (writes/s)</text>`+"\n", bx, by-10)
	fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#888"/>`+"\n", bx, bx+bw, by+bh, by+bh)
	slot := bw / float64(max(len(modes), 1))
	for i, m := range modes {
		h := bh * m.Stats.Throughput / maxTP
		x := bx + float64(i)*slot + slot*0.15
		c := plotColors[i%len(plotColors)]
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="%s"/>`+"\n", x, by+bh-h, slot*0.7, h, c)
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%.0f</text>`+"\n", x+slot*0.35, by+bh-h-6, m.Stats.Throughput)
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`+"\n", x+slot*0.35, by+bh+16, html.EscapeString(m.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// WriteSweepSVG draws a sweep over link latency: each mode's p50 and p99
// against the link latency on the left, its throughput on the right.
func WriteSweepSVG(w io.Writer, title string, points []SweepPoint) error {
	const (
		width, height  = 960, 440
		lx, ly, lw, lh = 70.0, 60.0, 400.0, 320.0  // latency panel
		tx, ty, tw, th = 550.0, 60.0, 380.0, 320.0 // throughput panel
	)
	if len(points) == 0 {
		return fmt.Errorf("bench: an empty sweep")
	}
	var maxLink time.Duration
	var maxLat time.Duration
	var maxTP float64
	names := []string{}
	for _, p := range points {
		maxLink = max(maxLink, p.LinkLatency)
		for _, m := range p.Modes {
			maxLat = max(maxLat, m.Stats.P99)
			maxTP = math.Max(maxTP, m.Stats.Throughput)
		}
	}
	for _, m := range points[0].Modes {
		names = append(names, m.Name)
	}
	linkMS := niceCeil(ms(maxLink))
	latMS := niceCeil(ms(maxLat))
	maxTP = niceCeil(maxTP)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="28" font-size="16" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	axes := func(x0, y0, w0, h0, ymax float64, yunit, label string) {
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#888"/>`+"\n", x0, y0, w0, h0)
		for i := 0; i <= 4; i++ {
			y := y0 + h0 - h0*float64(i)/4
			fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/><text x="%g" y="%g" text-anchor="end">%g%s</text>`+"\n", x0, x0+w0, y, y, x0-6, y+4, ymax*float64(i)/4, yunit)
			x := x0 + w0*float64(i)/4
			fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#eee"/><text x="%g" y="%g" text-anchor="middle">%g ms</text>`+"\n", x, x, y0, y0+h0, x, y0+h0+16, linkMS*float64(i)/4)
		}
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">one-way link latency</text>`+"\n", x0+w0/2, y0+h0+34)
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="14">%s</text>`+"\n", x0, y0-10, label)
	}
	axes(lx, ly, lw, lh, latMS, " ms", "write latency (solid p50, dashed p99)")
	axes(tx, ty, tw, th, maxTP, "", "throughput (writes/s)")
	xOf := func(x0, w0 float64, d time.Duration) float64 { return x0 + w0*ms(d)/linkMS }
	for i, name := range names {
		c := plotColors[i%len(plotColors)]
		var p50, p99, tp []string
		for _, p := range points {
			for _, m := range p.Modes {
				if m.Name != name {
					continue
				}
				p50 = append(p50, fmt.Sprintf("%.1f,%.1f", xOf(lx, lw, p.LinkLatency), ly+lh-lh*ms(m.Stats.P50)/latMS))
				p99 = append(p99, fmt.Sprintf("%.1f,%.1f", xOf(lx, lw, p.LinkLatency), ly+lh-lh*ms(m.Stats.P99)/latMS))
				tp = append(tp, fmt.Sprintf("%.1f,%.1f", xOf(tx, tw, p.LinkLatency), ty+th-th*m.Stats.Throughput/maxTP))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.5" points="%s"/>`+"\n", c, strings.Join(p50, " "))
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="6,4" points="%s"/>`+"\n", c, strings.Join(p99, " "))
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.5" points="%s"/>`+"\n", c, strings.Join(tp, " "))
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="14" height="4" fill="%s"/><text x="%g" y="%g">%s</text>`+"\n",
			lx+12, ly+14+float64(i)*18, c, lx+32, ly+20+float64(i)*18, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
