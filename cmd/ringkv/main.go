// Command ringkv is the command-line client and operator tool of ringkv.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	ctx, stdout, stop := endings()
	defer stop()
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
