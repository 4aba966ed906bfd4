package raftnode

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// proposer hands commands to raft in waves. While maxWaves waves are
// waiting to commit, new commands queue; when a wave commits, everything
// queued leaves together. Under load this turns many small Raft batches
// (one fsync on every replica each) into few large ones; with no load a
// command goes out at once.
type proposer struct {
	r        *raft.Raft
	maxWaves int

	mu    sync.Mutex
	queue []*proposal
	waves int
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
	cmd     []byte
	timeout time.Duration
	state   atomic.Int32
	done    chan struct{} // closed once err and resp are set
	err     error
	resp    interface{}
}

func newProposer(r *raft.Raft, maxWaves int) *proposer {
	return &proposer{r: r, maxWaves: maxWaves}
}

// propose queues cmd and waits for its outcome. If ctx ends before the
// command was handed to raft it is dropped and sent is false: it was not
// applied. If ctx ends after, sent is true and err is ctx's error: the
// outcome is unknown.
func (p *proposer) propose(ctx context.Context, cmd []byte) (resp interface{}, sent bool, err error) {
	pr := &proposal{cmd: cmd, timeout: enqueueTimeout(ctx), done: make(chan struct{})}
	p.mu.Lock()
	p.queue = append(p.queue, pr)
	start := p.waves < p.maxWaves
	if start {
		p.waves++
	}
	p.mu.Unlock()
	if start {
		go p.run()
	}
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

// run sends waves until the queue is empty.
func (p *proposer) run() {
	for {
		p.mu.Lock()
		wave := p.queue
		p.queue = nil
		if len(wave) == 0 {
			p.waves--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		futures := make([]raft.ApplyFuture, len(wave))
		for i, pr := range wave {
			if pr.state.CompareAndSwap(propQueued, propSent) {
				futures[i] = p.r.Apply(pr.cmd, pr.timeout)
			}
		}
		// Entries commit in order, so waiting in order costs nothing extra;
		// the wave is done when its last entry is.
		for i, pr := range wave {
			if futures[i] == nil {
				continue
			}
			pr.err = futures[i].Error()
			if pr.err == nil {
				pr.resp = futures[i].Response()
			}
			close(pr.done)
		}
	}
}
