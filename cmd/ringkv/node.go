package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringkv/ringkv/api"
	"github.com/ringkv/ringkv/base"
	"github.com/ringkv/ringkv/client"
)

// moveLine says the replica move in motion, and its last step.
func moveLine(s api.ClusterInfo) string {
	if s.Move == nil {
		return "no replica moving"
	}
	line := s.Move.String()
	if s.Progress != "" {
		line += ": " + s.Progress
	}
	return line
}

// cmdNode: ringkv node ls | drain ID | undrain ID | remove ID [--no-wait].
func cmdNode(ctx context.Context, timeout time.Duration, c *client.Client, args []string, out io.Writer) error {
	usage := errors.New("usage: ringkv node ls | node drain ID | node undrain ID | node remove ID  [--no-wait]")
	var noWait bool
	var force bool
	pos, err := subFlags("node", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noWait, "no-wait", false, "")
		fs.BoolVar(&force, "force", false, "")
	})
	if err != nil || len(pos) == 0 {
		return usage
	}
	get := func() (api.ClusterInfo, error) {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return c.Cluster(rctx)
	}
	if pos[0] == "ls" && len(pos) == 1 {
		st, err := get()
		if err != nil {
			return err
		}
		printCluster(out, st)
		return nil
	}
	if len(pos) != 2 {
		return usage
	}
	id := pos[1]
	var resp api.NodeRemoval
	rctx, cancel := context.WithTimeout(ctx, timeout)
	switch pos[0] {
	case "drain", "undrain":
		err = c.DrainNode(rctx, id, pos[0] == "drain")
	case "remove":
		resp, err = c.RemoveNode(rctx, id, force)
	default:
		err = usage
	}
	cancel()
	if err != nil {
		return err
	}
	switch {
	case pos[0] == "remove" && resp.Removed != "":
		fmt.Fprintf(out, "node %s removed\n", id)
		return nil
	case pos[0] == "remove":
		fmt.Fprintf(out, "node %s leaving: its %d replicas move to other nodes first\n", id, resp.Replicas)
	case pos[0] == "drain":
		fmt.Fprintf(out, "node %s draining: its replicas move to other nodes\n", id)
	default:
		fmt.Fprintf(out, "node %s takes replicas again\n", id)
	}
	if noWait {
		return nil
	}
	return followNode(ctx, pos[0], id, get, out)
}

// followNode follows the replica moves after a node command (verb) until
// the node is gone (remove) or the placement has settled, showing progress
// on a terminal, then prints the cluster.
func followNode(ctx context.Context, verb, id string, get func() (api.ClusterInfo, error), out io.Writer) error {
	begin := time.Now()
	tty := isTerminal(os.Stderr)
	for {
		st, err := get()
		if err != nil {
			return err
		}
		nd, present := st.Node(base.NodeID(id))
		held := len(nd.Replicas)
		// The answering node may not have applied the change yet: wait
		// until its view shows the node's new state.
		var done bool
		switch verb {
		case "remove":
			done = !present
		case "drain":
			done = present && nd.Draining && (st.Balanced || held == 0 && st.Move == nil)
		default:
			done = present && !nd.Draining && st.Balanced
		}
		if done {
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Fprintf(out, "done in %s\n", time.Since(begin).Round(time.Millisecond))
			printCluster(out, st)
			return nil
		}
		if tty {
			fmt.Fprintf(os.Stderr, "\r%s holds %d replicas; %s   ", id, held, moveLine(st))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printCluster(out io.Writer, st api.ClusterInfo) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tWEIGHT\tSTATE\tREPLICAS\tLEADS")
	for _, n := range st.Nodes {
		state := "active"
		switch {
		case n.Leaving:
			state = "leaving"
		case n.Draining:
			state = "draining"
		}
		if !n.Voter {
			state += " (meta non-voter)"
		}
		w := n.Weight
		if w == 0 {
			w = 1
		}
		fmt.Fprintf(tw, "%s\t%s\t%g\t%s\t%s\t%s\n", n.ID, n.HTTPAddr, w, state, groupList(n.Replicas), groupList(n.Leads))
	}
	tw.Flush()
	fmt.Fprintf(out, "replication %d; %s", st.Replication, moveLine(st))
	if st.Balanced {
		fmt.Fprint(out, "; placement balanced")
	}
	fmt.Fprintln(out)
}

func groupList(gs []base.GroupID) string {
	if len(gs) == 0 {
		return "-"
	}
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = fmt.Sprint(g)
	}
	return strings.Join(s, ",")
}
