// Command ringkv is the command-line client and operator tool of ringkv.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		signal.Reset(os.Interrupt, syscall.SIGTERM) // a second Ctrl-C ends it at once
	}()
	// A closed stdout (`ringkv bench ... | head -2`) ends a command as
	// Ctrl-C does: its context is cancelled and it cleans up what it
	// started (local nodes, links, temporary dirs). SIGPIPE is ignored so
	// that the write fails with EPIPE instead of killing the process
	// before that cleanup; Notify would not do, as it would also report
	// the writes to a peer's closed socket.
	signal.Ignore(syscall.SIGPIPE)
	stdout := &pipeWriter{w: os.Stdout, closed: cancel}
	root := newRoot(os.Stdin, stdout, os.Stderr, os.Getenv)
	err := root.ExecuteContext(ctx)
	if stdout.broken.Load() {
		os.Exit(128 + int(syscall.SIGPIPE)) // as a shell reports it; nobody reads a message
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ringkv:", err)
		os.Exit(1)
	}
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
