package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/client"
)

// Watchers keep watch streams open on the workload's prefix through the
// run (Config.Watchers), each through a cluster client of every node, so
// that a stream whose node dies is opened again elsewhere from its last
// cursor. After the run, each stream is checked against what the workload
// did: every acknowledged write arrives, none twice, a key's changes in
// increasing modify index, and no change that was never asked for.

// watcher is one stream and what it delivered.
type watcher struct {
	cc     *client.Cluster
	mu     sync.Mutex
	events []client.WatchEvent
	err    error
}

func (w *watcher) snapshot() ([]client.WatchEvent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events), w.err
}

// startWatchers opens n streams on prefix and returns once each delivers a
// write made after it opened.
func (c *Cluster) startWatchers(ctx context.Context, n int, prefix string) ([]*watcher, error) {
	var endpoints []string
	for _, p := range c.Procs {
		endpoints = append(endpoints, p.URL())
	}
	o := client.ClusterOptions{Token: c.Token, HealthInterval: 250 * time.Millisecond, Timeout: 5 * time.Second}
	if c.local != nil {
		o.TLS = c.local.ClientTLS
	}
	var ws []*watcher
	for i := 0; i < n; i++ {
		cc, err := client.NewCluster(ctx, endpoints, o)
		if err != nil {
			return ws, fmt.Errorf("watcher %d: %w", i, err)
		}
		w := &watcher{cc: cc}
		ws = append(ws, w)
		events := cc.Watch(ctx, prefix, client.WatchOptions{})
		go func() {
			for ev := range events {
				w.mu.Lock()
				if ev.Err != nil {
					w.err = ev.Err
				} else {
					w.events = append(w.events, ev)
				}
				w.mu.Unlock()
			}
		}()
	}
	ready := prefix + "watchers-ready"
	err := poll(ctx, 100*time.Millisecond, func() error {
		if _, err := c.Procs[0].Client.Put(ctx, ready, []byte(ready), client.PutOptions{}); err != nil {
			return err
		}
		for i, w := range ws {
			if evs, err := w.snapshot(); len(evs) == 0 {
				return fmt.Errorf("watcher %d has delivered nothing (%v)", i, err)
			}
		}
		return nil
	})
	return ws, err
}

func closeWatchers(ws []*watcher) {
	for _, w := range ws {
		w.cc.Close()
	}
}

// expected is what the workload did, as a watch must show it.
type expected struct {
	// acked are the puts that were acknowledged, as "key@index"; okDeletes
	// and triedDeletes count a key's deletes acknowledged and tried.
	acked        map[string]bool
	okDeletes    map[string]int
	triedDeletes map[string]int
	// values are the values each key was ever asked to take.
	values map[string]map[string]bool
}

func expectations(ops []porcupine.Operation, sets []string, sentinel string) expected {
	e := expected{acked: map[string]bool{}, okDeletes: map[string]int{}, triedDeletes: map[string]int{}, values: map[string]map[string]bool{}}
	value := func(k, v string) {
		if e.values[k] == nil {
			e.values[k] = map[string]bool{}
		}
		e.values[k][v] = true
	}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		switch in.Op {
		case OpPut, OpCAS:
			value(in.Key, in.Value)
			if out.OK && out.Index > 0 {
				e.acked[fmt.Sprintf("%s@%d", in.Key, out.Index)] = true
			}
		case OpDelete:
			e.triedDeletes[in.Key]++
			if out.OK {
				e.okDeletes[in.Key]++
			}
		}
	}
	for _, k := range sets {
		e.acked[k+"@?"] = true // its index is not known: any put of it
	}
	value(sentinel, sentinel)
	return e
}

// checkWatchers waits until every stream has delivered every acknowledged
// put (or a minute passed), then checks each; it returns the problems
// found and the events delivered.
func checkWatchers(ctx context.Context, ws []*watcher, e expected, setPrefix string, lossOK bool) ([]string, int) {
	deadline := time.Now().Add(time.Minute)
	var problems []string
	total := 0
	for i, w := range ws {
		var evs []client.WatchEvent
		var missing []string
		// Wait while writes are missing and the stream still delivers:
		// five quiet seconds end the wait (the stream is not behind, the
		// writes are gone).
		seen, quietSince := -1, time.Now()
		for {
			var err error
			evs, err = w.snapshot()
			missing = missingPuts(evs, e)
			if len(evs) != seen {
				seen, quietSince = len(evs), time.Now()
			}
			if len(missing) == 0 || lossOK || time.Since(quietSince) > 5*time.Second || time.Now().After(deadline) || ctx.Err() != nil {
				if err != nil {
					problems = append(problems, fmt.Sprintf("watcher %d ended: %v", i, err))
				}
				break
			}
			sleep(ctx, 100*time.Millisecond)
		}
		total += len(evs)
		if !lossOK {
			for j, m := range missing {
				if j == 5 {
					problems = append(problems, fmt.Sprintf("watcher %d: ... and %d more acknowledged writes missing", i, len(missing)-5))
					break
				}
				problems = append(problems, fmt.Sprintf("watcher %d: acknowledged write %s missing", i, m))
			}
		}
		problems = append(problems, streamProblems(i, evs, e, setPrefix)...)
	}
	return problems, total
}

// missingPuts lists the acknowledged writes evs lacks: puts, and deletes
// by their number for each key.
func missingPuts(evs []client.WatchEvent, e expected) []string {
	got := map[string]bool{}
	deletes := map[string]int{}
	for _, ev := range evs {
		if ev.Type == api.EventPut {
			got[fmt.Sprintf("%s@%d", ev.Key, ev.Index)] = true
			got[ev.Key+"@?"] = true
		} else {
			deletes[ev.Key]++
		}
	}
	var missing []string
	for k := range e.acked {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k, n := range e.okDeletes {
		if deletes[k] < n {
			missing = append(missing, fmt.Sprintf("%s: %d of %d deletes", k, deletes[k], n))
		}
	}
	sort.Strings(missing)
	return missing
}

// streamProblems checks one stream's events: none twice, a key's in
// increasing index, none that no client asked for, and as many deletes as
// were acknowledged and no more than were tried.
func streamProblems(i int, evs []client.WatchEvent, e expected, setPrefix string) []string {
	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf("watcher %d: ", i)+fmt.Sprintf(format, args...))
		}
	}
	last := map[string]uint64{}
	deletes := map[string]int{}
	for _, ev := range evs {
		if prev, ok := last[ev.Key]; ok && ev.Index <= prev {
			report("%s: a change at index %d after one at %d (repeated or out of order)", ev.Key, ev.Index, prev)
		}
		last[ev.Key] = ev.Index
		switch ev.Type {
		case api.EventPut:
			v := string(ev.Value)
			if strings.HasPrefix(ev.Key, setPrefix) {
				if v != ev.Key {
					report("%s: a value never written, %q", ev.Key, v)
				}
			} else if !e.values[ev.Key][v] {
				report("%s: a value never written, %q", ev.Key, v)
			}
		case api.EventDelete:
			deletes[ev.Key]++
		default:
			report("an event of type %q", ev.Type)
		}
	}
	for k, n := range deletes {
		if n > e.triedDeletes[k] {
			report("%s: %d deletes, %d tried", k, n, e.triedDeletes[k])
		}
	}
	return problems
}
