package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// endings is the context a command runs in and the stdout it writes to.
// Ctrl-C, SIGTERM and a closed stdout (`ringkv bench ... | head -2`) all
// cancel the context, so that the command cleans up what it started
// (local nodes, links, temporary dirs); a second Ctrl-C ends it at once.
//
// SIGPIPE is ignored so that a write to a closed stdout fails with EPIPE
// instead of killing the process before that cleanup. signal.Notify would
// not do: it would also report writes to a peer's closed socket.
func endings() (context.Context, *pipeWriter, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		signal.Reset(os.Interrupt, syscall.SIGTERM)
	}()
	signal.Ignore(syscall.SIGPIPE)
	return ctx, &pipeWriter{w: os.Stdout, closed: cancel}, cancel
}

// pipeWriter is stdout, which calls closed once a write finds nobody
// reading it.
type pipeWriter struct {
	w      io.Writer
	closed func()
	broken atomic.Bool
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if errors.Is(err, syscall.EPIPE) {
		p.broken.Store(true)
		p.closed()
	}
	return n, err
}
