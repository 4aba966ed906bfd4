package raftnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/store"
)

// fakeApplier stands in for raft: each Apply is reported on applied and
// stays pending until the test completes it.
type fakeApplier struct {
	applied chan *fakeFuture
	index   uint64
}

type fakeFuture struct {
	cmd   []byte
	index uint64
	done  chan struct{}
}

func (f *fakeFuture) Error() error  { <-f.done; return nil }
func (f *fakeFuture) Index() uint64 { return f.index }
func (f *fakeFuture) complete()     { close(f.done) }
func (f *fakeFuture) writes() int   { return max(1, batchLen(f.cmd)) }
func (f *fakeFuture) Response() interface{} {
	res := store.Result{Index: f.index, Batch: make([]store.Result, f.writes())}
	for i := range res.Batch {
		res.Batch[i].Index = f.index
	}
	return res
}

// batchLen is the number of commands packed in cmd (0: not a batch).
func batchLen(cmd []byte) int {
	cmds, err := store.DecodeBatch(cmd)
	if err != nil {
		return 0
	}
	return len(cmds)
}

func (a *fakeApplier) Apply(cmd []byte, _ time.Duration) raft.ApplyFuture {
	a.index++
	f := &fakeFuture{cmd: cmd, index: a.index, done: make(chan struct{})}
	a.applied <- f
	return f
}

// next waits for the proposer's next Apply.
func (a *fakeApplier) next(t *testing.T) *fakeFuture {
	t.Helper()
	select {
	case f := <-a.applied:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no entry handed to raft within 10s")
		return nil
	}
}

// queued polls until the proposer holds n queued proposals.
func queued(t *testing.T, p *proposer, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		got := len(p.queue)
		p.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%d proposals queued, want %d", got, n)
		case <-tick.C:
		}
	}
}

// put proposes a put of key in the background; its outcome arrives on the
// returned channel.
func put(p *proposer, key string) <-chan error {
	out := make(chan error, 1)
	go func() {
		cmd := store.Command{Op: store.OpPut, Key: []byte(key), Value: []byte("v")}.Encode()
		_, _, err := p.propose(context.Background(), cmd, []byte(key))
		out <- err
	}()
	return out
}

func waitPuts(t *testing.T, outs ...<-chan error) {
	t.Helper()
	for _, o := range outs {
		select {
		case err := <-o:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a proposal did not finish within 10s")
		}
	}
}

// busyWave makes the proposer send a wave of 4 writes and finish it: one
// write goes out alone, four queue behind it and leave together.
func busyWave(t *testing.T, a *fakeApplier, p *proposer) {
	t.Helper()
	first := put(p, "first")
	f1 := a.next(t)
	var outs []<-chan error
	for i := range 4 {
		outs = append(outs, put(p, fmt.Sprintf("busy%d", i)))
	}
	queued(t, p, 4)
	f1.complete()
	waitPuts(t, first)
	f2 := a.next(t)
	if f2.writes() != 4 {
		t.Fatalf("second wave carried %d writes, want the 4 queued", f2.writes())
	}
	f2.complete()
	waitPuts(t, outs...)
}

// sendsAlone proposes one write and checks that it leaves in a wave of its
// own, without waiting for the linger's end (a.next fails after 10s).
func sendsAlone(t *testing.T, a *fakeApplier, p *proposer) {
	t.Helper()
	x := put(p, "x")
	f := a.next(t)
	if f.writes() != 1 {
		t.Fatalf("wave carried %d writes, want x alone", f.writes())
	}
	f.complete()
	waitPuts(t, x)
}

// slowFlights makes every wave's flight look an hour long, so that the
// linger is the configured one.
func slowFlights(time.Time) time.Duration { return time.Hour }

// After a wave of several writes, a leader lingers: writes that arrive
// one after another during the linger leave in one entry (here fewer than
// the last wave's, so the whole linger passes). Without linger the first
// of them leaves alone at once.
func TestProposerLingersAfterABusyWave(t *testing.T) {
	t.Run("linger", func(t *testing.T) {
		a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
		p := newProposer(a, 1, 5*time.Second, nil)
		p.since = slowFlights
		busyWave(t, a, p)
		x := put(p, "x")
		queued(t, p, 1)
		select {
		case f := <-a.applied:
			t.Fatalf("entry %d (%d writes) sent while the leader should linger", f.index, f.writes())
		default:
		}
		y := put(p, "y")
		queued(t, p, 2)
		f := a.next(t)
		if f.writes() != 2 {
			t.Fatalf("the wave after the linger carried %d writes, want 2", f.writes())
		}
		f.complete()
		waitPuts(t, x, y)
	})
	t.Run("no linger", func(t *testing.T) {
		a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
		p := newProposer(a, 1, 0, nil)
		busyWave(t, a, p)
		sendsAlone(t, a, p)
	})
}

// A leader's linger ends once as many writes as its last wave carried
// are queued: those writers are back, and waiting longer would only add
// latency. An hour's linger would fail a.next after 10s.
func TestProposerLingerEndsOnceTheLastWaveIsBack(t *testing.T) {
	a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
	p := newProposer(a, 1, time.Hour, nil)
	p.since = slowFlights
	busyWave(t, a, p)
	var outs []<-chan error
	for i := range 3 {
		outs = append(outs, put(p, fmt.Sprintf("back%d", i)))
	}
	queued(t, p, 3)
	notSentYet(t, a, "3 of the last wave's 4 writers back")
	outs = append(outs, put(p, "back3"))
	nextWave(t, a, 4).complete()
	waitPuts(t, outs...)
}

// Writes that come while a wave is in flight count towards the next
// wave's target: with two of the last wave's four writers queued during
// its flight, the linger ends once two more come. Counting only those that
// come after the flight, the leader would wait for four more, an hour here
// (a.next would fail after 10s).
func TestProposerLingerCountsWritesQueuedInFlight(t *testing.T) {
	a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
	p := newProposer(a, 1, time.Hour, nil)
	p.since = slowFlights
	busyWave(t, a, p)
	var outs []<-chan error
	for i := range 4 {
		outs = append(outs, put(p, fmt.Sprintf("w%d", i)))
	}
	wave := nextWave(t, a, 4)
	var next []<-chan error
	for i := range 2 {
		next = append(next, put(p, fmt.Sprintf("early%d", i)))
	}
	queued(t, p, 2)
	wave.complete()
	waitPuts(t, outs...)
	notSentYet(t, a, "2 of the last wave's 4 writers back")
	for i := range 2 {
		next = append(next, put(p, fmt.Sprintf("late%d", i)))
	}
	nextWave(t, a, 4).complete()
	waitPuts(t, next...)
}

// notSentYet fails if the proposer has handed an entry to raft, which it
// should not have done yet (when).
func notSentYet(t *testing.T, a *fakeApplier, when string) {
	t.Helper()
	select {
	case f := <-a.applied:
		t.Fatalf("entry %d (%d writes) sent with %s", f.index, f.writes(), when)
	default:
	}
}

// nextWave waits for the next entry and checks it carries n writes.
func nextWave(t *testing.T, a *fakeApplier, n int) *fakeFuture {
	t.Helper()
	f := a.next(t)
	if f.writes() != n {
		t.Fatalf("the wave after the linger carried %d writes, want %d", f.writes(), n)
	}
	return f
}

// The proposer counts the waves it sent and the writes they carried, and
// reports its flight and linger (GroupStatus, /metrics).
func TestProposerStats(t *testing.T) {
	a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
	p := newProposer(a, 1, 20*time.Millisecond, nil)
	p.since = func(time.Time) time.Duration { return 2 * time.Millisecond }
	busyWave(t, a, p) // a wave of 1, then one of 4
	got := p.stats()
	want := proposalStats{waves: 2, writes: 5, flight: 2 * time.Millisecond, linger: 6 * time.Millisecond}
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

// A lone writer never waits for the linger: a wave of one write is
// followed at once by the next.
func TestProposerLoneWriterDoesNotLinger(t *testing.T) {
	a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
	p := newProposer(a, 1, time.Hour, nil)
	for i := range 3 {
		out := put(p, fmt.Sprintf("k%d", i))
		f := a.next(t) // an hour's linger would fail here after 10s
		if f.writes() != 1 {
			t.Fatalf("wave %d carried %d writes", i, f.writes())
		}
		f.complete()
		waitPuts(t, out)
	}
}

// A leader lingers three of its recent flights, not the whole configured
// linger: with flights of a millisecond, an hour's linger ends after
// about 3ms (a.next would fail after 10s).
func TestProposerLingerFollowsTheFlight(t *testing.T) {
	a := &fakeApplier{applied: make(chan *fakeFuture, 16)}
	p := newProposer(a, 1, time.Hour, nil)
	p.since = func(time.Time) time.Duration { return time.Millisecond }
	busyWave(t, a, p)
	if got := p.lingerFor(); got != lingerFlights*time.Millisecond {
		t.Fatalf("linger after flights of 1ms is %v, want %v", got, lingerFlights*time.Millisecond)
	}
	sendsAlone(t, a, p)
}

// The flight is a moving average with weight 1/8, and the linger three of
// it, at most the configured linger; before any flight, the configured one.
func TestProposerLingerFor(t *testing.T) {
	p := newProposer(nil, 1, 20*time.Millisecond, nil)
	if got := p.lingerFor(); got != 20*time.Millisecond {
		t.Fatalf("linger with no flight yet is %v, want the configured 20ms", got)
	}
	p.flew(2 * time.Millisecond)
	if got := p.lingerFor(); got != 6*time.Millisecond {
		t.Fatalf("linger after one flight of 2ms is %v, want 6ms", got)
	}
	p.flew(10 * time.Millisecond) // 2 + (10-2)/8 = 3ms
	if got := p.lingerFor(); got != 9*time.Millisecond {
		t.Fatalf("linger after flights of 2ms and 10ms is %v, want 9ms", got)
	}
	for range 100 {
		p.flew(time.Second)
	}
	if got := p.lingerFor(); got != 20*time.Millisecond {
		t.Fatalf("linger after long flights is %v, want the configured 20ms", got)
	}
}
