package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/client"
)

// watched collects what a watch delivers.
type watched struct {
	mu     sync.Mutex
	events []client.WatchEvent
	err    error
}

func collect(events <-chan client.WatchEvent) *watched {
	w := &watched{}
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
	return w
}

func (w *watched) snapshot() ([]client.WatchEvent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events), w.err
}

// ackedWrite is a write the cluster acknowledged.
type ackedWrite struct {
	key, value string
	group      uint32
	raftIndex  uint64
	deleted    bool
}

// id names a write as its event does: its key, group and Raft index.
func (a ackedWrite) id() string { return fmt.Sprintf("%s@%d/%d", a.key, a.group, a.raftIndex) }

func eventID(ev client.WatchEvent) string {
	return fmt.Sprintf("%s@%d/%d", ev.Key, ev.Group, ev.RaftIndex)
}

// TestWatchThroughKills opens a watch through a cluster client, writes
// through every node, kills (SIGKILL) the node serving the watch, adds a
// group (keys move between groups), and kills a group leader; every acknowledged write must arrive once, in index
// order for its key, and nothing that was not written; a watch resumed
// from a cursor taken midway delivers exactly what followed it.
func TestWatchThroughKills(t *testing.T) {
	c := startCluster(t, 3)
	c.waitReady(3)
	wc := newCluster(t, c.endpoints(), client.ClusterOptions{HealthInterval: 200 * time.Millisecond, Timeout: 5 * time.Second})
	writer := newCluster(t, c.endpoints(), client.ClusterOptions{HealthInterval: 200 * time.Millisecond, Timeout: 5 * time.Second})
	wctx, stop := context.WithCancel(ctx(t, 3*time.Minute))
	defer stop()
	w := collect(wc.Watch(wctx, "w/", client.WatchOptions{}))
	// The stream is open once it delivers a write made after it started.
	eventually(t, "the watch is open", 30*time.Second, func() error {
		if _, err := writer.Put(wctx, "w/open", []byte("x"), client.PutOptions{}); err != nil {
			return err
		}
		if evs, err := w.snapshot(); len(evs) == 0 {
			return fmt.Errorf("no event yet (%v)", err)
		}
		return nil
	})
	serving := ""
	for _, s := range wc.Stats() {
		if s.Requests > 0 {
			serving = s.ID
		}
	}
	if serving == "" {
		t.Fatal("no node was sent the watch")
	}

	var mu sync.Mutex
	var acked []ackedWrite
	attempted := map[string]bool{} // key=value of every write tried
	writing, stopWriting := context.WithCancel(wctx)
	var wg sync.WaitGroup
	for wr := 0; wr < 4; wr++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; writing.Err() == nil; i++ {
				key, value := fmt.Sprintf("w/%d", (wr*7+i)%16), fmt.Sprintf("%d-%d", wr, i)
				mu.Lock()
				attempted[key+"="+value] = true
				mu.Unlock()
				var res client.WriteResult
				var err error
				del := i%5 == 4
				if del {
					res, err = writer.Delete(writing, key, client.PutOptions{})
				} else {
					res, err = writer.Put(writing, key, []byte(value), client.PutOptions{})
				}
				if err != nil {
					continue
				}
				mu.Lock()
				acked = append(acked, ackedWrite{key: key, value: value, group: res.Group, raftIndex: res.RaftIndex, deleted: del})
				mu.Unlock()
			}
		}()
	}
	waitAcked := func(n int) {
		eventually(t, fmt.Sprintf("%d writes acknowledged", n), 60*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < n {
				return fmt.Errorf("%d so far", len(acked))
			}
			return nil
		})
	}
	waitAcked(100)
	var victim = -1
	for i, p := range c.procs {
		if p.ID == serving {
			victim = i
		}
	}
	t.Logf("killing %s, which serves the watch", serving)
	if err := c.procs[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	waitAcked(250)
	if err := c.procs[victim].Start(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(3)
	// A ring change under way: a fourth group takes a quarter of the
	// keys, their histories now split between two groups.
	epoch := ringEpoch(t, c)
	if _, err := c.procs[0].Client.AddGroup(wctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	waitAcked(320)
	eventually(t, "the ring change done", 60*time.Second, func() error {
		r, err := c.procs[0].Client.Ring(wctx)
		if err != nil || r.Migration != nil || r.Epoch == epoch {
			return fmt.Errorf("still moving (%v)", err)
		}
		return nil
	})
	leader := c.leaderOf(1)
	t.Logf("killing %s, the leader of group 1", c.procs[leader].ID)
	if err := c.procs[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	waitAcked(400)
	if err := c.procs[leader].Start(); err != nil {
		t.Fatal(err)
	}
	waitAcked(500)
	stopWriting()
	wg.Wait()

	// Every acknowledged write arrives; every event is a write that was
	// tried; a key's events come in increasing index, each once.
	eventually(t, "every acknowledged write delivered", 60*time.Second, func() error {
		evs, err := w.snapshot()
		if err != nil {
			return fmt.Errorf("the watch ended: %v", err)
		}
		got := map[string]bool{}
		for _, ev := range evs {
			got[eventID(ev)] = true
		}
		for _, a := range acked {
			if !got[a.id()] {
				return fmt.Errorf("%s (%s=%q) not delivered", a.id(), a.key, a.value)
			}
		}
		return nil
	})
	evs, _ := w.snapshot()
	last := map[string]uint64{}
	seen := map[string]bool{}
	deletes := 0
	for _, ev := range evs {
		if seen[eventID(ev)] {
			t.Errorf("%s delivered twice", eventID(ev))
		}
		seen[eventID(ev)] = true
		if ev.Index <= last[ev.Key] {
			t.Errorf("%s: event at index %d after one at %d", ev.Key, ev.Index, last[ev.Key])
			for _, e := range evs {
				if e.Key == ev.Key {
					t.Logf("  %s %s@%d group %d raft %d cursor %s", e.Type, e.Key, e.Index, e.Group, e.RaftIndex, e.Cursor)
				}
			}
		}
		last[ev.Key] = ev.Index
		switch ev.Type {
		case "put":
			if ev.Key != "w/open" && !attempted[ev.Key+"="+string(ev.Value)] {
				t.Errorf("an event for a write never made: %s=%s", ev.Key, ev.Value)
			}
		case "delete":
			deletes++
		default:
			t.Errorf("event of type %q", ev.Type)
		}
	}
	ackedDeletes := 0
	for _, a := range acked {
		if a.deleted {
			ackedDeletes++
		}
	}
	t.Logf("%d events for %d acknowledged writes (%d deletes), through 2 kills", len(evs), len(acked), ackedDeletes)

	// Resume from a cursor taken midway: exactly what followed it, group
	// by group in the same order.
	mid := len(evs) / 2
	r := collect(wc.Watch(wctx, "w/", client.WatchOptions{Since: evs[mid].Cursor}))
	byGroup := func(evs []client.WatchEvent) map[uint32][]string {
		out := map[uint32][]string{}
		for _, ev := range evs {
			out[uint32(ev.Group)] = append(out[uint32(ev.Group)], fmt.Sprintf("%s %s@%d", ev.Type, ev.Key, ev.Index))
		}
		return out
	}
	// Writes whose outcome was unknown may still arrive: compare once
	// both watches have as many events and are still.
	var got []client.WatchEvent
	eventually(t, "the resumed watch caught up", 30*time.Second, func() error {
		var err error
		if got, err = r.snapshot(); err != nil {
			return err
		}
		if evs, _ = w.snapshot(); len(got) != len(evs)-mid-1 {
			return fmt.Errorf("%d of %d events", len(got), len(evs)-mid-1)
		}
		return nil
	})
	want := byGroup(evs[mid+1:])
	g := byGroup(got)
	for group := range want {
		if a, b := g[group], want[group]; !slices.Equal(a, b) {
			i := 0
			for i < min(len(a), len(b)) && a[i] == b[i] {
				i++
			}
			t.Errorf("resumed from %s, group %d: %d events, want %d; first difference at %d: got %v, want %v",
				evs[mid].Cursor, group, len(a), len(b), i, a[i:min(i+3, len(a))], b[i:min(i+3, len(b))])
		}
	}
	if len(g) != len(want) {
		t.Errorf("resumed: events of groups %v, want %v", g, want)
	}
}

// TestBlockingGetWakes measures how soon a blocking GET answers after the
// write that changes its key is acknowledged, and checks it answers the
// new value.
func TestBlockingGetWakes(t *testing.T) {
	c := startCluster(t, 3)
	c.waitReady(3)
	cl := client.New(c.procs[0].HTTPAddr)
	cx := ctx(t, time.Minute)
	res, err := cl.Put(cx, "b/key", []byte("0"), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	index := res.Index
	var lags []time.Duration
	for i := 1; i <= 20; i++ {
		type answer struct {
			at    time.Time
			value string
			index string
			err   error
		}
		got := make(chan answer, 1)
		go func() {
			url := fmt.Sprintf("http://%s/v1/kv/b/key?index=%d&wait=30s", c.procs[i%3].HTTPAddr, index)
			resp, err := http.Get(url)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			got <- answer{at: time.Now(), value: string(b), index: resp.Header.Get("X-KV-Index")}
		}()
		// A write elsewhere first: the GET has its time to park.
		if _, err := cl.Put(cx, "b/other", []byte("x"), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err := cl.Put(cx, "b/key", []byte(strconv.Itoa(i)), client.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		acked := time.Now()
		a := <-got
		if a.err != nil || a.value != strconv.Itoa(i) || a.index != strconv.FormatUint(res.Index, 10) {
			t.Fatalf("round %d: the blocking GET answered %q at index %s (%v), want %d at %d", i, a.value, a.index, a.err, i, res.Index)
		}
		lags = append(lags, a.at.Sub(acked))
		index = res.Index
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	t.Logf("a blocking GET answered %v after the write's acknowledgement (median of %d; min %v, max %v; negative: before the writer heard)",
		lags[len(lags)/2], len(lags), lags[0], lags[len(lags)-1])
}

func ringEpoch(t *testing.T, c *cluster) uint64 {
	t.Helper()
	r, err := c.procs[0].Client.Ring(ctx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return r.Epoch
}
