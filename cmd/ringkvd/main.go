// Command ringkvd is the ringkv server: one process is one node, hosting a
// replica of the metadata group and of several data Raft groups.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ringkvd:", err)
		os.Exit(1)
	}
}
