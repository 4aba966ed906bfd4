package raftnode

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/store"
)

// proposer hands commands to raft in waves. While maxWaves waves are
// waiting to commit, new commands queue; when a wave commits, everything
// queued leaves together. Under load this turns many small Raft batches
// (one fsync on every replica each) into few large ones; with no load a
// command goes out at once.
type proposer struct {
	r        applier
	notify   *appendNotifier // nil: no asynchronous writes
	maxWaves int
	linger   time.Duration // see Config.ProposalLinger

	mu    sync.Mutex
	queue []*proposal
	waves int
	// While the leader lingers, gathered is closed once the queue holds
	// gatherTarget proposals.
	gathered     chan struct{}
	gatherTarget int

	// flight is a moving average of a wave's flight: from its hand-over
	// to raft until it is done (applied; for a wave of asynchronous
	// writes only, stored by the leader), in nanoseconds.
	flight atomic.Int64
	since  func(time.Time) time.Duration // time.Since; tests stretch it

	// sentWaves and sentWrites count the waves handed to raft and the
	// writes they carried (GroupStatus, /metrics).
	sentWaves, sentWrites atomic.Uint64
}

const (
	propQueued int32 = iota
	propSent
	propDropped
)

// proposal is one command on its way through raft. Only the proposer's
// goroutine waits on the raft future (raft futures do not support several
// concurrent waiters); callers wait on done.
type proposal struct {
	cmd []byte
	// key is the key a packable command (a put or delete) writes; nil for
	// a command that must have a log entry of its own.
	key     []byte
	timeout time.Duration
	// appended, for an asynchronous write, receives where the entry
	// landed once the leader has stored it.
	appended chan appended
	state    atomic.Int32
	done     chan struct{} // closed once err and resp are set
	err      error
	resp     interface{}
}

// lingerMinWave is the wave size from which a leader lingers before the
// next wave: a sign that several writers keep this group busy. A lone
// client (waves of one) never waits.
const lingerMinWave = 4

// applier is the part of *raft.Raft the proposer uses.
type applier interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
}

func newProposer(r applier, maxWaves int, linger time.Duration, notify *appendNotifier) *proposer {
	return &proposer{r: r, maxWaves: maxWaves, linger: linger, notify: notify, since: time.Since}
}

// propose queues cmd and waits for its outcome. If ctx ends before the
// command was handed to raft it is dropped and sent is false: it was not
// applied. If ctx ends after, sent is true and err is ctx's error: the
// outcome is unknown.
func (p *proposer) propose(ctx context.Context, cmd, key []byte) (resp interface{}, sent bool, err error) {
	pr := p.enqueue(ctx, cmd, key, false)
	select {
	case <-pr.done:
		return pr.resp, true, pr.err
	case <-ctx.Done():
		if pr.state.CompareAndSwap(propQueued, propDropped) {
			return nil, false, ctx.Err()
		}
		return nil, true, ctx.Err()
	}
}

// proposeAsync is propose for an asynchronous write: it returns once the
// leader has durably appended the entry, with its index and term, or with
// the error that kept it from being appended.
func (p *proposer) proposeAsync(ctx context.Context, cmd, key []byte) (at appended, sent bool, err error) {
	pr := p.enqueue(ctx, cmd, key, true)
	select {
	case at = <-pr.appended:
		return at, true, nil
	case <-pr.done:
		select {
		case at = <-pr.appended:
			return at, true, nil
		default:
		}
		if pr.err == nil {
			pr.err = fmt.Errorf("%w: entry committed before its append was seen", base.ErrOutcomeUnknown)
		}
		return at, true, pr.err
	case <-ctx.Done():
		if pr.state.CompareAndSwap(propQueued, propDropped) {
			return at, false, ctx.Err()
		}
		return at, true, ctx.Err()
	}
}

func (p *proposer) enqueue(ctx context.Context, cmd, key []byte, async bool) *proposal {
	pr := &proposal{cmd: cmd, key: key, timeout: enqueueTimeout(ctx), done: make(chan struct{})}
	if async {
		pr.appended = make(chan appended, 1)
	}
	p.mu.Lock()
	p.queue = append(p.queue, pr)
	if p.gathered != nil && len(p.queue) >= p.gatherTarget {
		close(p.gathered)
		p.gathered = nil
	}
	start := p.waves < p.maxWaves
	if start {
		p.waves++
	}
	p.mu.Unlock()
	if start {
		go p.run()
	}
	return pr
}

// run sends waves until the queue is empty.
func (p *proposer) run() {
	last := 0 // writes in the previous wave
	for {
		if p.linger > 0 && last >= lingerMinWave {
			// Busy: let the writes that are on their way join this wave.
			// A closed loop of clients otherwise splits into cohorts that
			// alternate, each wave carrying half of them.
			p.gather(last, p.lingerFor())
		}
		p.mu.Lock()
		wave := p.queue
		p.queue = nil
		if len(wave) == 0 {
			p.waves--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		last = len(wave)
		entries := pack(wave)
		p.counted(entries)
		sent := time.Now()
		futures := make([]raft.ApplyFuture, len(entries))
		forget := make([]func(), len(entries))
		stored := make([]chan struct{}, len(entries))
		for i, e := range entries {
			if p.notify != nil && e.async() {
				props, st := e.props, make(chan struct{})
				stored[i] = st
				forget[i] = p.notify.expect(e.cmd, func(index, term uint64) {
					for _, pr := range props {
						if pr.appended != nil {
							pr.appended <- appended{index, term}
						}
					}
					close(st)
				})
			}
			futures[i] = p.r.Apply(e.cmd, e.timeout)
		}
		// A wave of asynchronous writes only is done once the leader has
		// stored it: the next wave need not wait for followers, which is
		// the point of async. Otherwise entries commit in order, so waiting
		// in order costs nothing extra and the wave is done when its last
		// entry is.
		if p.allStoredAsync(entries) {
			outs := make([]*outcome, len(entries))
			for i := range entries {
				outs[i] = await1(futures[i])
				select {
				case <-stored[i]:
				case <-outs[i].done:
				}
			}
			p.flew(p.since(sent))
			go finish(entries, outs, forget)
			continue
		}
		outs := make([]*outcome, len(entries))
		for i := range entries {
			outs[i] = &outcome{f: futures[i]}
		}
		finish(entries, outs, forget)
		p.flew(p.since(sent))
	}
}

// counted adds a wave to the totals that GroupStatus reports.
func (p *proposer) counted(entries []entry) {
	n := 0
	for _, e := range entries {
		n += len(e.props)
	}
	if n > 0 {
		p.sentWaves.Add(1)
		p.sentWrites.Add(uint64(n))
	}
}

// proposalStats is what the proposer reports of its recent waves.
type proposalStats struct {
	waves, writes  uint64
	flight, linger time.Duration
}

func (p *proposer) stats() proposalStats {
	return proposalStats{
		waves:  p.sentWaves.Load(),
		writes: p.sentWrites.Load(),
		flight: time.Duration(p.flight.Load()),
		linger: p.lingerFor(),
	}
}

// lingerFlights is how many of its recent flights a busy leader lingers,
// at most the configured linger. A wave's flight is what a round of
// replication costs on this machine, under this load: a slow disk or busy
// CPUs make it long, and then a longer linger saves more rounds. On a fast
// machine with idle CPU a short flight keeps the linger, and so the
// latency, short (README, "A linger that follows the flight").
const lingerFlights = 3

// lingerFor is how long the leader lingers before its next wave.
func (p *proposer) lingerFor() time.Duration {
	f := time.Duration(p.flight.Load())
	if f <= 0 {
		return p.linger
	}
	return min(p.linger, lingerFlights*f)
}

// flew folds a wave's flight into the moving average (weight 1/8). Only
// run goroutines call it, one wave after another unless ProposalWaves > 1,
// when a lost update merely drops one sample.
func (p *proposer) flew(d time.Duration) {
	old := p.flight.Load()
	if old <= 0 {
		p.flight.Store(int64(d))
		return
	}
	p.flight.Store(old + (int64(d)-old)/8)
}

// gather waits until the queue holds as many writes as the last wave
// carried, or until linger (lingerFor) ends. In a closed loop a group has
// about that many writers; once that many wait, waiting longer would only
// add latency. Writes that came while the last wave was in flight count
// too: counting only those that come after it, as ringkv once did, made
// a wave that carried all of its group's writers wait for as many again,
// so the whole linger always passed (README, "Gathering a wave").
func (p *proposer) gather(last int, linger time.Duration) {
	p.mu.Lock()
	if len(p.queue) >= last {
		p.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	p.gathered, p.gatherTarget = ch, last
	p.mu.Unlock()
	t := time.NewTimer(linger)
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
	p.mu.Lock()
	if p.gathered == ch {
		p.gathered = nil
	}
	p.mu.Unlock()
}

func (p *proposer) allStoredAsync(entries []entry) bool {
	if p.notify == nil {
		return false
	}
	for _, e := range entries {
		for _, pr := range e.props {
			if pr.appended == nil {
				return false
			}
		}
	}
	return true
}

// outcome is a raft future's result, waited for by one goroutine only
// (raft futures allow one waiter): either await1's, which closes done, or
// whoever calls get without await1.
type outcome struct {
	f    raft.ApplyFuture
	done chan struct{} // set by await1
	err  error
}

// await1 starts the one wait for f.
func await1(f raft.ApplyFuture) *outcome {
	o := &outcome{f: f, done: make(chan struct{})}
	go func() {
		o.err = f.Error()
		close(o.done)
	}()
	return o
}

func (o *outcome) get() error {
	if o.done == nil {
		return o.f.Error()
	}
	<-o.done
	return o.err
}

// finish waits for each entry's outcome and hands it to its proposals.
func finish(entries []entry, outs []*outcome, forget []func()) {
	for i, e := range entries {
		err := outs[i].get()
		if forget[i] != nil {
			forget[i]()
		}
		var resp interface{}
		if err == nil {
			resp = outs[i].f.Response()
		}
		for j, pr := range e.props {
			pr.err, pr.resp = err, resp
			if len(e.props) > 1 && err == nil {
				pr.resp = unpack(resp, j)
			}
			close(pr.done)
		}
	}
}

// entry is one log entry of a wave: one command, or several puts and
// deletes on distinct keys packed into an OpBatch.
type entry struct {
	cmd     []byte
	timeout time.Duration
	props   []*proposal
}

func (e entry) async() bool {
	for _, pr := range e.props {
		if pr.appended != nil {
			return true
		}
	}
	return false
}

// pack turns a wave into log entries: packable commands share entries
// (each key at most once per entry, at most store.MaxBatch per entry), the
// others get one each. Dropped proposals are left out.
//
// Keys are told apart by a 64-bit hash, not kept as strings: the wave
// allocates nothing per write for it. Two keys whose hashes collide go to
// different entries, as a repeated key does, which is just as correct.
func pack(wave []*proposal) []entry {
	var out []entry
	type open struct {
		at   int
		keys map[uint64]struct{}
	}
	var packs []open
	for _, pr := range wave {
		if !pr.state.CompareAndSwap(propQueued, propSent) {
			continue
		}
		if pr.key == nil {
			out = append(out, entry{cmd: pr.cmd, timeout: pr.timeout, props: []*proposal{pr}})
			continue
		}
		h := maphash.Bytes(packSeed, pr.key)
		placed := false
		for i := range packs {
			e := &out[packs[i].at]
			if _, dup := packs[i].keys[h]; dup || len(e.props) == store.MaxBatch {
				continue
			}
			packs[i].keys[h] = struct{}{}
			e.props = append(e.props, pr)
			e.timeout = max(e.timeout, pr.timeout)
			placed = true
			break
		}
		if !placed {
			// The first pack usually takes the whole wave: size it so.
			// Later ones hold repeated keys and start small.
			size := 1
			if len(packs) == 0 {
				size = min(len(wave), store.MaxBatch)
			}
			keys := make(map[uint64]struct{}, size)
			keys[h] = struct{}{}
			packs = append(packs, open{at: len(out), keys: keys})
			props := make([]*proposal, 1, size)
			props[0] = pr
			out = append(out, entry{timeout: pr.timeout, props: props})
		}
	}
	for i := range out {
		if out[i].cmd != nil {
			continue
		}
		if len(out[i].props) == 1 {
			out[i].cmd = out[i].props[0].cmd
			continue
		}
		cmds := make([][]byte, len(out[i].props))
		for j, pr := range out[i].props {
			cmds[j] = pr.cmd
		}
		out[i].cmd = store.EncodeBatch(cmds)
	}
	return out
}

// packSeed seeds the key hashes pack tells keys apart by.
var packSeed = maphash.MakeSeed()

// unpack returns the j-th command's outcome from a packed entry's.
func unpack(resp interface{}, j int) interface{} {
	res, ok := resp.(store.Result)
	switch {
	case !ok:
		return resp // an error from the state machine
	case res.Err != nil:
		return store.Result{Index: res.Index, Err: res.Err}
	case j >= len(res.Batch):
		return store.Result{Index: res.Index, Err: fmt.Errorf("packed entry at %d answered %d of its commands", res.Index, len(res.Batch))}
	}
	return res.Batch[j]
}
